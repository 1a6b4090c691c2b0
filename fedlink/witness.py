"""A witness: cosigns a log's checkpoint only if it is consistent with the last one it cosigned.

Every agent and officer runs one. Its memory is one small file: per log
origin, the size and root of the last checkpoint it cosigned, and that
checkpoint as the log signed it. Before it judges a new checkpoint against
that memory it re-verifies the saved one: a saved checkpoint whose signature
fails, or that disagrees with the size and root beside it, is damage on this
machine (a flipped block, a bad edit) and is named as such (StateFileError),
never blamed on the coordinator. Only a validly signed saved checkpoint can
show the log was rewritten. A checkpoint
that shrinks the log (rollback), shows another root at the same size (split
view), or comes with a consistency proof that does not link it to that
memory is refused with a WitnessError saying which. Because the state is
written before the cosignature is handed out, a witness that crashes midway
has at worst recorded a head it never vouched for, never the other way round.
"""
from __future__ import annotations

import base64
import enum
import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from fedlink import files, merkle
from fedlink.checkpoint import Checkpoint, CheckpointError, cosign, open_checkpoint
from fedlink.note import COSIGNATURE_V1, Note, NoteError, Signature, SigningKey, VerifierKey


class Refusal(enum.Enum):
    BAD_SIGNATURE = "not signed by the log"
    ROLLBACK = "rollback"
    SPLIT_VIEW = "split view"
    INCONSISTENT = "inconsistent"


class StateFileError(ValueError):
    """This party's own state file is damaged; the message names it and how to repair it."""


class WitnessError(ValueError):
    """The witness refused to cosign; ``refusal`` says why in one word, the message in full."""

    def __init__(self, refusal: Refusal, message: str):
        super().__init__(f"{refusal.value}: {message}")
        self.refusal = refusal


@dataclass(frozen=True)
class SeenHead:
    """What a witness remembers of a log: the last tree head it cosigned."""

    size: int
    root: bytes
    checkpoint: str = field(default="", compare=False)  # the checkpoint note, as the log signed it ("" in a state from before they were kept)


# -- the key file ------------------------------------------------------------------


def new_witness_key(path: Path, name: str) -> SigningKey:
    """A fresh cosignature/v1 key named ``name``, written to ``path`` (0600, never overwritten)."""
    key = SigningKey.generate(name, COSIGNATURE_V1)
    files.write_atomic(path, (key.encode() + "\n").encode(), replace=False)
    return key


def load_witness_key(path: Path) -> SigningKey:
    key = SigningKey.parse(Path(path).read_text())
    if key.key_type != COSIGNATURE_V1:
        raise ValueError(f"{path} holds a key of another type than cosignature/v1")
    return key


# -- the witness ---------------------------------------------------------------------


class Witness:
    """A cosigning key and the state file that keeps it from vouching for two histories."""

    def __init__(self, key: SigningKey, state_path: Path, clock: Callable[[], float] = time.time):
        if key.key_type != COSIGNATURE_V1:
            raise ValueError(f"the witness key {key.name} is not a cosignature/v1 key")
        self.key = key
        self.state_path = Path(state_path)
        self._clock = clock

    @property
    def verifier(self) -> VerifierKey:
        return self.key.verifier()

    def last(self, origin: str) -> SeenHead | None:
        """The last checkpoint cosigned for ``origin``: the size to ask a consistency proof from."""
        return self._read().get(origin)

    def cosign(self, message: bytes | str | Note, consistency_proof: Sequence[bytes],
               log_key: VerifierKey) -> Signature:
        """Cosign a checkpoint note if it extends what this witness cosigned before.

        ``consistency_proof`` links ``last(origin).size`` to the new size
        (empty when this witness has not seen the log, or the size is the
        same). Raises WitnessError naming the refusal; on success returns
        the cosignature line, after the new head is on disk.
        """
        try:
            checkpoint, note = open_checkpoint(message, log_key)
        except CheckpointError as e:
            raise WitnessError(Refusal.BAD_SIGNATURE, str(e)) from None
        with self._locked():
            state = self._read()
            last = state.get(checkpoint.origin)
            if last is not None:
                self._verify_saved(checkpoint.origin, last, log_key)
            _check_extends(last, checkpoint, consistency_proof)
            signature = cosign(note, self.key, int(self._clock())).signatures[-1]
            state[checkpoint.origin] = SeenHead(checkpoint.size, checkpoint.root, str(note))
            self._write(state)
        return signature

    def _verify_saved(self, origin: str, seen: SeenHead, log_key: VerifierKey) -> None:
        """The saved head as the log signed it, or StateFileError: this machine's damage, not the log's."""
        if not seen.checkpoint:  # a state from before checkpoints were kept: the next cosignature keeps one
            return
        try:
            saved, _ = open_checkpoint(seen.checkpoint, log_key)
        except (CheckpointError, NoteError) as e:
            raise StateFileError(self._damaged(f"the checkpoint of {origin} saved in it does not verify with the "
                                               f"log key ({e})")) from None
        if (saved.origin, saved.size, saved.root) != (origin, seen.size, seen.root):
            raise StateFileError(self._damaged(
                f"the size and root it holds for {origin} ({seen.size}, {base64.b64encode(seen.root).decode()}) "
                f"are not those of the signed checkpoint saved with them ({saved.size}, "
                f"{base64.b64encode(saved.root).decode()})"))

    def _damaged(self, why: str) -> str:
        return (f"{self.state_path}: the witness state is damaged: {why}. The file was damaged on this machine, "
                "not by the coordinator: restore it from a backup, never delete it (a fresh state would cosign "
                "any history)")

    # -- state file ---------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Two processes of one party (an agent run and an officer check) may
        # witness at once: read-check-write must be one step for both.
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_path.with_name(self.state_path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, SeenHead]:
        try:
            logs = json.loads(self.state_path.read_text())["logs"]
            return {origin: SeenHead(v["size"], base64.b64decode(v["root"], validate=True), v.get("checkpoint", ""))
                    for origin, v in logs.items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # Starting afresh would cosign any history: refuse until someone restores the file.
            raise StateFileError(f"{self.state_path}: the witness state is unreadable ({e!r}): torn or overwritten "
                                 "on this machine, not by the coordinator; restore it from a backup, never delete "
                                 "it (a fresh state would cosign any history)") from None

    def _write(self, state: dict[str, SeenHead]) -> None:
        logs = {origin: {"size": c.size, "root": base64.b64encode(c.root).decode(), "checkpoint": c.checkpoint}
                for origin, c in state.items()}
        files.write_atomic(self.state_path, (json.dumps({"version": 2, "logs": logs}, indent=1) + "\n").encode())


def _check_extends(last: SeenHead | None, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Raise WitnessError unless ``new`` is consistent with the last cosigned head."""
    if last is None or last.size == 0:
        if proof:
            raise WitnessError(Refusal.INCONSISTENT, "a consistency proof was given from an empty log")
        return
    seen = f"the checkpoint of size {last.size} this witness cosigned for {new.origin}"
    if new.size < last.size:
        raise WitnessError(Refusal.ROLLBACK, f"the log has {new.size} leaves, fewer than {seen}")
    if new.size == last.size and new.root != last.root:
        raise WitnessError(Refusal.SPLIT_VIEW, f"size {new.size} with another root than {seen}: the log "
                                               "shows different histories to different parties")
    try:
        merkle.verify_consistency(last.size, new.size, last.root, new.root, proof)
    except merkle.ProofError as e:
        raise WitnessError(Refusal.INCONSISTENT, f"the checkpoint of size {new.size} is not proven to extend "
                                                 f"{seen} ({e}): the log was rewritten or forked") from None


__all__ = ["Refusal", "SeenHead", "Witness", "WitnessError", "load_witness_key", "new_witness_key"]
