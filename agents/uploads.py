"""What the agent keeps of each upload it made, locally (issue 19): the rows a
worklist shows, so the worklist of a run is joined to the upload that run used
and not to whatever the extract holds today.

`state_dir/uploads/<upload digest>.parquet` is written, compressed, while the
upload is prepared (before anything is sent: its digest names it); once the
coordinator has committed it, `index.json` beside it records which upload_id
it became. The last KEEP committed uploads are kept; older copies, and copies
of uploads that were never committed, are deleted then. Every file is 0600
(fedlink/files.py) and written whole or not at all."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pandas as pd

from agents.extract import Extract
from fedlink.files import write_atomic
from fedlink.witness import StateFileError

KEEP = 3  # a run uses the latest upload; a few more cover a run that finished before the next upload
INDEX = "index.json"


class UploadCopies:
    def __init__(self, state_dir: Path):
        self.folder = Path(state_dir) / "uploads"

    def _copy(self, digest: str) -> Path:
        return self.folder / f"{digest}.parquet"

    def save(self, digest: str, extract: Extract) -> None:
        """Write the extract's rows (the department's own columns, as the worklist shows them) for
        the upload of `digest`. Streamed frame by frame, so only the compressed copy is held."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(c, pa.string()) for c in extract.columns])
        buffer = io.BytesIO()
        with pq.ParquetWriter(buffer, schema, compression="zstd") as writer:
            for frame in extract:
                writer.write_table(pa.Table.from_pandas(frame[extract.columns].astype(str), schema=schema,
                                                        preserve_index=False))
        write_atomic(self._copy(digest), buffer.getvalue(), 0o600)

    def _entries(self) -> list[dict]:
        path = self.folder / INDEX
        if not path.exists():
            return []
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))["uploads"]
            return [{"upload_id": str(e["upload_id"]), "digest": str(e["digest"])} for e in entries]
        except (ValueError, KeyError, TypeError) as e:
            raise StateFileError(f"{path}: the index of this agent's upload copies is unreadable ({e}); delete it "
                                 "(worklists then join the current extract until the next upload)") from e

    def committed(self, upload_id: str, digest: str) -> None:
        """Record that the upload of `digest` was committed as `upload_id`; keep the last KEEP, delete the rest."""
        entries = [e for e in self._entries() if e["upload_id"] != upload_id]
        entries = (entries + [{"upload_id": upload_id, "digest": digest}])[-KEEP:]
        write_atomic(self.folder / INDEX, json.dumps({"uploads": entries}, indent=1).encode(), 0o600)
        kept = {self._copy(e["digest"]).name for e in entries}
        for stale in self.folder.glob("*.parquet"):
            if stale.name not in kept:
                stale.unlink(missing_ok=True)

    def rows(self, upload_id: str) -> pd.DataFrame | None:
        """The rows of the committed upload `upload_id`, indexed by record_id, or None where no copy is held."""
        for e in self._entries():
            if e["upload_id"] == upload_id and self._copy(e["digest"]).exists():
                return pd.read_parquet(self._copy(e["digest"])).set_index("record_id", drop=False)
        return None


def say_missing(upload_id: str, folder: Path) -> None:
    """Once per worklist: why its rows come from the current extract."""
    print(f"note: this agent no longer holds its copy of upload {upload_id or '(not named by the coordinator)'} "
          f"(kept in {folder}: the last {KEEP} uploads); its flags are joined to the current extract, and a row "
          "whose record has left it is marked in in_extract", file=sys.stderr)
