"""Match engines: one algorithm (``server.engine.base.Engine``), backends that
run its tasks (the Splink pattern).

Engines by URL (``engine_from_url``, the coordinator's ``--engine``):

==========================================  ======================================
``local`` (or empty)                        in process: exact, LSH-blocked above
                                            ``AUTO_EXACT_PAIRS`` pairs (the default)
``local+exact``                             in process, exact always
``local+lsh``                               in process, blocked, ``LshParams()``
``local+lsh?bands=900&rows=22``             in process, blocked, those parameters
``dask://HOST:PORT``                        Dask scheduler at HOST:PORT: exact or
                                            blocked per pair, as ``local`` chooses
``dask+exact://HOST:PORT``                  Dask, exact always
``dask+lsh://HOST:PORT?bands=..&rows=..``   Dask, blocked
==========================================  ======================================

LSH parameters in the query: ``bands``, ``rows``, ``seed``, ``max_bucket``.
Any ``dask`` URL also takes ``storage=PATH_OR_URL`` (a folder, or an fsspec
URL such as ``s3://bucket/prefix``, that the coordinator and every worker
reach) and ``block=ROWS``: the multi-party pass then runs over partition
files there (``server.engine.partitioned``), e.g.
``dask://sched:8786?storage=/shared/fedlink&block=100000``.
"""
from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from server.blocking.params import LshParams
from server.engine.base import Engine
from server.engine.dask import DaskEngine
from server.engine.local import LocalEngine


def _lsh_params(query: str) -> LshParams:
    known = {"bands", "rows", "seed", "max_bucket"}
    values = {}
    for key, vals in parse_qs(query, strict_parsing=False).items():
        if key not in known:
            raise ValueError(f"unknown LSH parameter {key!r}: use {', '.join(sorted(known))}")
        try:
            values[key] = int(vals[-1])
        except ValueError:
            raise ValueError(f"LSH parameter {key} must be an integer, got {vals[-1]!r}") from None
    return LshParams(**values)


def _storage(url: str, query: str) -> tuple[str, dict]:
    """The query without ``storage`` and ``block``, and those as DaskEngine arguments."""
    rest, out = [], {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "storage":
            if not value:
                raise ValueError(f"engine {url!r}: storage needs a folder or URL")
            out["storage"] = value
        elif key == "block":
            try:
                out["block_rows"] = int(value)
            except ValueError:
                raise ValueError(f"engine {url!r}: block must be a number of records, got {value!r}") from None
            if out["block_rows"] < 1:
                raise ValueError(f"engine {url!r}: block must be positive, got {value!r}")
        else:
            rest.append((key, value))
    if "block_rows" in out and "storage" not in out:
        raise ValueError(f"engine {url!r}: block needs storage=")
    return urlencode(rest), out


def engine_from_url(url: str | None) -> Engine:
    """``local``, ``local+exact``, ``local+lsh[?bands=..&rows=..]``, ``dask://HOST:PORT``,
    ``dask+exact://HOST:PORT``, ``dask+lsh://HOST:PORT[?..]`` (module doc)."""
    if not url or url in ("local", "inprocess"):
        return LocalEngine(blocking="auto")
    if url == "local+exact":
        return LocalEngine()
    if url.startswith("local+lsh"):
        rest = url[len("local+lsh"):]
        if rest and not rest.startswith("?"):
            raise ValueError(f"unknown engine {url!r}")
        return LocalEngine(blocking=_lsh_params(rest[1:]))
    parts = urlsplit(url)
    if parts.scheme in ("dask", "dask+exact", "dask+lsh"):
        if not parts.hostname or parts.port is None:
            raise ValueError(f"engine {url!r}: expected {parts.scheme}://HOST:PORT")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        query, storage = _storage(url, parts.query)
        if query and parts.scheme != "dask+lsh":
            raise ValueError(f"engine {url!r}: LSH parameters need dask+lsh://")
        if parts.scheme == "dask+lsh":
            blocking = _lsh_params(query)
        else:
            blocking = "auto" if parts.scheme == "dask" else None
        return DaskEngine(f"tcp://{host}:{parts.port}", blocking=blocking, **storage)
    raise ValueError(
        f"unknown engine {url!r}: use 'local', 'local+exact', 'local+lsh', 'dask://HOST:PORT', "
        "'dask+exact://HOST:PORT' or 'dask+lsh://HOST:PORT'"
    )
