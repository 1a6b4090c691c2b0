"""Partition files on storage the coordinator and the Dask workers both reach.

A partitioned pass (``server.engine.partitioned``) never sends filters
through the scheduler: the coordinator writes each department's filters in
blocks of rows, one ``.npy`` file per (department, block), under a folder of
a path or an fsspec URL (``/shared/fedlink``, ``s3://bucket/fedlink``), and
each task opens only the files of its own partition.  Every file is written
under a temporary name and moved into place, so a task re-run after its
worker died never reads half a file.

NumPy's ``.npy`` format is used for every array: a small header, then the
raw C-order data, so a task can read a range of rows (a band range of a key
file) with one seek, on a local disk or an object store alike.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import fsspec
import numpy as np


def _fs(url: str):
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def write_array(url: str, array: np.ndarray) -> None:
    """``array`` as a .npy file at ``url``, whole or not at all."""
    write_rows(url, array.shape, array.dtype, [array])


def write_rows(url: str, shape: tuple, dtype, chunks: Iterable[np.ndarray]) -> None:
    """A .npy file of ``shape`` written chunk by chunk (C order: leading rows first)."""
    fs, path = _fs(url)
    part = f"{path}.{uuid.uuid4().hex}.part"
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)  # a no-op on object stores
    written = 0
    with fs.open(part, "wb") as out:
        np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                   "fortran_order": False, "shape": tuple(shape)})
        for chunk in chunks:
            data = np.ascontiguousarray(chunk, dtype=dtype)
            out.write(data.tobytes())
            written += data.size
    if written != int(np.prod(shape)):
        fs.rm(part)
        raise ValueError(f"{url}: wrote {written} values for shape {shape}")
    fs.mv(part, path)


def _header(fh) -> tuple[tuple, np.dtype]:
    np.lib.format.read_magic(fh)
    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    return shape, dtype


def read_array(url: str) -> np.ndarray:
    with fsspec.open(url, "rb") as fh:
        shape, dtype = _header(fh)
        data = fh.read()
    return np.frombuffer(data, dtype).reshape(shape).copy() if shape else np.empty(0, dtype)


def read_leading(url: str, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the leading axis of the .npy file at ``url``: one seek, one read."""
    with fsspec.open(url, "rb") as fh:
        shape, dtype = _header(fh)
        row = int(np.prod(shape[1:])) * dtype.itemsize
        base = fh.tell()
        fh.seek(base + start * row)
        data = fh.read((stop - start) * row)
    return np.frombuffer(data, dtype).reshape((stop - start, *shape[1:])).copy()


@dataclass(frozen=True)
class Block:
    """One (department, block) partition of filters: rows ``start:start + rows`` of the department."""

    department: int
    index: int
    start: int
    rows: int
    url: str


@dataclass(frozen=True)
class Partitions:
    """Every department's filter blocks under ``root`` (what the pass's tasks are handed)."""

    root: str
    words: int
    blocks: tuple[tuple[Block, ...], ...]  # per department, in row order

    def sizes(self) -> list[int]:
        return [sum(b.rows for b in blocks) for blocks in self.blocks]

    def starts(self, department: int) -> np.ndarray:
        """Each block's first row, and the department's size last."""
        blocks = self.blocks[department]
        return np.array([b.start for b in blocks] + [sum(b.rows for b in blocks)], np.int64)


def write_department(root: str, department: int, blocks: Iterable[np.ndarray]) -> tuple[Block, ...]:
    """A department's filters, handed over block by block (as the coordinator reads them from its store),
    each written as its own partition: the writer never holds more than one block."""
    out, start = [], 0
    for index, filters in enumerate(blocks):
        url = f"{root}/filters/d{department}-b{index}.npy"
        write_array(url, filters)
        out.append(Block(department, index, start, len(filters), url))
        start += len(filters)
    return tuple(out)


def in_blocks(filters: np.ndarray, rows: int) -> Iterator[np.ndarray]:
    """An in-memory department as blocks of ``rows`` (at least one block, perhaps empty)."""
    yield filters[:rows]
    for start in range(rows, len(filters), rows):
        yield filters[start:start + rows]


def write_partitions(root: str, filters: list[np.ndarray], rows: int) -> Partitions:
    """Departments held in memory, written as blocks of ``rows`` under ``root``."""
    words = filters[0].shape[1] if filters else 16
    return Partitions(root, words, tuple(write_department(root, d, in_blocks(f, rows))
                                         for d, f in enumerate(filters)))


def new_root(storage: str) -> str:
    """A fresh folder under ``storage`` for one pass (passes never share files)."""
    return f"{storage.rstrip('/')}/pass-{uuid.uuid4().hex[:12]}"


def remove(root: str) -> None:
    fs, path = _fs(root)
    if fs.exists(path):
        fs.rm(path, recursive=True)
