"""Witnessing the coordinator's log at every contact, and the project's witness quorum.

Every agent and officer is a witness (fedlink.witness): at every contact it
fetches the latest checkpoint, checks the log's signature and that the
checkpoint extends the last one it cosigned, cosigns it and hands the
cosignature back. Before an agent uploads or acts on flags it also asks for
a quorum: enough OTHER witnesses of the project must have cosigned a
checkpoint that is consistent with its own history and no older than the
head it cosigned at its previous contact. A coordinator that shows two
parties two histories can then get neither to act: the other parties'
cosignatures are on a history this party does not share (caught, and the
conflicting witness named), or missing (and the message says whose).

The project's witnesses are a file the CA operator keeps and sends with the
certificate bundle (`witnesses.toml`): the quorum and one verifier key per
witness, as each department or officer sent it (`fedlink agent witness-key`,
`fedlink audit witness-key`). The coordinator reads the same file to know
whose cosignatures to keep; it reloads it when it changes.
"""
from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from fedlink import files, merkle
from fedlink.audit import AuditError, load_log_key
from fedlink.checkpoint import Checkpoint, CheckpointError, cosigners, open_checkpoint
from fedlink.note import COSIGNATURE_V1, NoteError, VerifierKey
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.witness import StateFileError, Witness, WitnessError, load_witness_key, new_witness_key

log = logging.getLogger("fedlink.witnessing")

DEFAULT_QUORUM = 1


# -- the project's witnesses file -----------------------------------------------------


@dataclass(frozen=True)
class Roster:
    """The project's witnesses and how many of them must cosign."""

    path: Path
    quorum: int
    keys: tuple[VerifierKey, ...]

    @classmethod
    def load(cls, path: Path) -> Roster:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"{path}: no such witnesses file (the CA operator sends it with the certificates)") \
                from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not valid TOML: {e}") from None
        quorum = data.get("quorum", DEFAULT_QUORUM)
        if not isinstance(quorum, int) or isinstance(quorum, bool) or quorum < 0:
            raise ValueError(f"{path}: quorum must be a whole number >= 0")
        keys = []
        for i, text in enumerate(data.get("witnesses", []), 1):
            try:
                key = VerifierKey.parse(str(text))
            except NoteError as e:
                raise ValueError(f"{path}: witness {i}: {e}") from None
            if key.key_type != COSIGNATURE_V1:
                raise ValueError(f"{path}: witness {i} ({key.name}) is not a cosignature/v1 key")
            keys.append(key)
        names = [k.name for k in keys]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: a witness name appears twice")
        return cls(path, quorum, tuple(keys))

    @staticmethod
    def watch(path: Path) -> RosterWatch:
        return RosterWatch(Path(path))

    def by_name(self, name: str) -> VerifierKey:
        return next(k for k in self.keys if k.name == name)

    def write(self) -> None:
        lines = ["# The project's witnesses (fedlink audit witnesses): the quorum of OTHER witnesses an agent",
                 "# requires before it uploads or acts on flags, and each witness's verifier key.",
                 f"quorum = {self.quorum}", "witnesses = ["]
        lines += [f"  {json.dumps(k.encode())}," for k in self.keys] + ["]"]
        files.write_atomic(self.path, ("\n".join(lines) + "\n").encode(), 0o644)

    def with_key(self, key: VerifierKey) -> Roster:
        """This roster with ``key`` added, replacing a key of the same name."""
        return Roster(self.path, self.quorum, tuple(k for k in self.keys if k.name != key.name) + (key,))


class RosterWatch:
    """The witnesses file, read again when it changes (a department added needs no restart)."""

    def __init__(self, path: Path):
        self.path = path
        self._seen: tuple[float, Roster] | None = None

    def current(self) -> Roster:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            raise ValueError(f"the project's witnesses file {self.path} does not exist yet (the CA operator writes "
                             "it: fedlink audit witnesses)") from None
        if self._seen is None or self._seen[0] != mtime:
            self._seen = (mtime, Roster.load(self.path))
        return self._seen[1]


def witness_at(key_path: Path, state_path: Path, name: str) -> Witness:
    """This party's witness: its key (made on first use, 0600) and its state."""
    key_path = Path(key_path)
    key = load_witness_key(key_path) if key_path.exists() else new_witness_key(key_path, name)
    return Witness(key, state_path)


# -- a contact -------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """What one contact saw: the checkpoint cosigned, and every witness's latest as served."""

    checkpoint: Checkpoint
    witnessed: tuple[str, ...]


class Witnessing:
    """Witness the log through a coordinator client; `stub` is the client's stub, `call` its call wrapper."""

    def __init__(self, call: Callable, stub, witness: Witness, roster: Roster, log_key: VerifierKey | None,
                 pin: Path):
        self.call, self.stub = call, stub
        self.witness, self.roster = witness, roster
        self._log_key, self._pin = log_key, Path(pin)
        self._acted = self._pin.with_name("acted.json")

    def log_key(self, offered: str) -> VerifierKey:
        """The pinned log key; else the one pinned at first use; else (trust on first use) the one offered."""
        if self._log_key is not None:
            return self._log_key
        if not self._pin.exists():
            try:
                VerifierKey.parse(offered)
            except NoteError as e:
                raise AuditError(f"the coordinator offers no usable log key ({e})") from None
            log.warning("trusting the coordinator's log key on first use: %s (pinned in %s)", offered, self._pin)
            files.write_atomic(self._pin, (offered.strip() + "\n").encode(), 0o644)
        self._log_key = load_log_key(self._pin)
        return self._log_key

    def acted(self) -> int:
        """The size of the checkpoint cosigned when this party last completed an action (0: never)."""
        try:
            return int(json.loads(self._acted.read_text())["size"])
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError) as e:
            raise StateFileError(f"{self._acted} is unreadable ({e!r}); restore it from a backup") from None

    def record_acted(self, contact: Contact) -> None:
        files.write_atomic(self._acted, json.dumps({"size": contact.checkpoint.size}).encode() + b"\n")

    def contact(self) -> Contact:
        """Fetch, check, cosign and hand back the latest checkpoint; AuditError if it does not extend our history."""
        if self.witness.verifier.encode() not in {k.encode() for k in self.roster.keys}:
            raise AuditError(f"this party's witness key is not in the project's witnesses file {self.roster.path}: "
                             f"send this line to the CA operator to add: {self.witness.verifier.encode()}")
        reply = self.call(self.stub.GetCheckpoint, pb.GetCheckpointRequest())
        key = self.log_key(reply.log_key)
        try:
            checkpoint, note = open_checkpoint(reply.checkpoint, key)
        except (CheckpointError, NoteError) as e:
            raise AuditError(f"the coordinator's checkpoint does not verify with the pinned log key: {e}") from None
        last = self.witness.last(checkpoint.origin)
        proof = self.proof(last.size, checkpoint.size) if last and 0 < last.size < checkpoint.size else []
        try:
            line = self.witness.cosign(note, proof, key)
        except WitnessError as e:
            raise AuditError(
                f"the coordinator's audit log is not consistent with the checkpoint this party cosigned before "
                f"({e}): history was rewritten or this party is shown a different log than others. Refusing to "
                f"continue; report this to the privacy officer with the file {self.witness.state_path}") from None
        self.call(self.stub.AddCosignature, pb.AddCosignatureRequest(cosigned=str(note.with_signature(line))))
        return Contact(checkpoint, tuple(reply.witnessed))

    def proof(self, old: int, new: int) -> list[bytes]:
        return list(self.call(self.stub.GetConsistencyProof,
                              pb.GetConsistencyProofRequest(old_size=old, new_size=new)).hashes)

    def require_quorum(self, contact: Contact, since: int = 0) -> list[str]:
        """The other witnesses vouching for this party's history, at least the project's quorum of
        them; AuditError saying who is missing otherwise (and `vouching`'s, naming a conflict)."""
        fresh, stale = self.vouching(contact, since)
        if len(fresh) < self.roster.quorum:
            raise AuditError(self._short(fresh, stale, since))
        return fresh

    def vouching(self, contact: Contact, since: int = 0) -> tuple[list[str], dict[str, int]]:
        """The other witnesses whose latest cosigned checkpoint is consistent with the one this
        contact cosigned and of size ``since`` or more (the checkpoint of this party's last
        completed action), and those consistent but older (with its size). A cosigned
        checkpoint that conflicts raises AuditError naming the witness."""
        me = self.witness.verifier.public_key
        others = [k for k in self.roster.keys if k.public_key != me]
        mine, fresh, stale = contact.checkpoint, [], {}
        for text in contact.witnessed:
            try:
                cosigned = cosigners(text, self._log_key, others)
            except (CheckpointError, NoteError) as e:
                raise AuditError(f"a witnessed checkpoint served by the coordinator does not verify: {e}") from None
            if cosigned.cosigners and not self._consistent(cosigned.checkpoint, mine):
                names = ", ".join(cosigned.names)
                raise AuditError(
                    f"split view: witness {names} cosigned a checkpoint of size {cosigned.checkpoint.size} (root "
                    f"{cosigned.checkpoint.root.hex()[:16]}) that is not consistent with the log this party sees "
                    f"(size {mine.size}, root {mine.root.hex()[:16]}): the coordinator shows {names} a different "
                    "history. Refusing to continue; report this to the privacy officer")
            for name in cosigned.names:
                if cosigned.checkpoint.size >= since:
                    fresh.append(name)
                else:
                    stale[name] = cosigned.checkpoint.size
        return fresh, stale

    def _consistent(self, theirs: Checkpoint, mine: Checkpoint) -> bool:
        old, new = sorted((theirs, mine), key=lambda c: c.size)
        if old.size == new.size:
            return old.root == new.root
        if old.size == 0:
            return True
        try:
            merkle.verify_consistency(old.size, new.size, old.root, new.root, self.proof(old.size, new.size))
        except merkle.ProofError:
            return False
        return True

    def _short(self, fresh: Sequence[str], stale: dict[str, int], since: int) -> str:
        others = [k for k in self.roster.keys if k.public_key != self.witness.verifier.public_key]
        floor = f"of size {since} or later (this party's last completed action)" if since else "of this log"
        missing = []
        for key in others:
            if key.name in fresh:
                continue
            missing.append(f"{key.name} (last cosigned size {stale[key.name]})" if key.name in stale
                           else f"{key.name} (no cosignature held)")
        return (f"no witness quorum: the project requires {self.roster.quorum} other witness(es) to have cosigned a "
                f"checkpoint {floor} consistent with this party's history; {len(fresh)} did"
                f"{' (' + ', '.join(fresh) + ')' if fresh else ''}. Missing: {'; '.join(missing) or 'none listed'} "
                f"in {self.roster.path}. Another department's agent or an officer (fedlink audit witness) "
                "cosigns at its next contact; if they did and their cosignatures are still missing, the "
                "coordinator is withholding them: report this to the privacy officer")


__all__ = ["Contact", "DEFAULT_QUORUM", "Roster", "RosterWatch", "Witnessing", "witness_at"]
