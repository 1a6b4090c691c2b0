"""fedlink.witness: cosign only what extends the last cosigned checkpoint, and remember it safely."""
from __future__ import annotations

import stat
import threading

import pytest

from fedlink import files, merkle
from fedlink.checkpoint import Checkpoint, CheckpointError, cosigners, require_quorum, sign_checkpoint
from fedlink.note import COSIGNATURE_V1, ED25519, SigningKey
from fedlink.witness import (Refusal, SeenHead, StateFileError, Witness, WitnessError, load_witness_key,
                             new_witness_key)

ORIGIN = "fedlink.example.gov.cn/pilot-2025"
LOG = SigningKey.generate(ORIGIN, ED25519)
NOW = 1_750_000_000


def tree(n: int, fork_at: int | None = None) -> merkle.MerkleTree:
    """A log of n leaves; with fork_at, the leaves from there on differ (another history)."""
    t = merkle.MerkleTree()
    for i in range(n):
        t.append(b"event %d" % i if fork_at is None or i < fork_at else b"forged %d" % i)
    return t


def checkpoint(t: merkle.MerkleTree, size: int | None = None):
    size = t.size if size is None else size
    return sign_checkpoint(Checkpoint(ORIGIN, size, t.root(size)), LOG)


@pytest.fixture
def make_witness(tmp_path):
    def make(name: str = "population") -> Witness:
        key_path = tmp_path / name / "witness.key"
        key = load_witness_key(key_path) if key_path.exists() else new_witness_key(key_path, f"w.example/{name}")
        return Witness(key, tmp_path / name / "witness-state.json", clock=lambda: NOW)
    return make


def cosign_from_last(w: Witness, t: merkle.MerkleTree, size: int | None = None):
    last = w.last(ORIGIN)
    size = t.size if size is None else size
    proof = t.consistency_proof(last.size, size) if last and last.size else []
    return w.cosign(checkpoint(t, size).to_bytes(), proof, LOG.verifier())


def test_first_sight_then_growth_then_same_head(make_witness):
    w, log = make_witness(), tree(9)
    for size in (0, 3, 7, 7, 9):
        cosign_from_last(w, log, size)
        assert w.last(ORIGIN) == SeenHead(size, log.root(size))
    note = checkpoint(log).with_signature(cosign_from_last(w, log))
    assert cosigners(note, LOG.verifier(), [w.verifier]).cosigners == ((w.key.name, NOW),)


def test_state_survives_a_restart_and_is_private(make_witness):
    w, log = make_witness(), tree(5)
    cosign_from_last(w, log)
    again = make_witness()
    assert again.key == w.key and again.last(ORIGIN) == SeenHead(5, log.root())
    for path in (w.state_path, w.state_path.parent / "witness.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in w.state_path.parent.iterdir()) == [
        "witness-state.json", "witness-state.json.lock", "witness.key"]  # no temporary file left behind


def test_an_unreadable_state_is_refused_not_forgotten(make_witness):
    w, log = make_witness(), tree(5)
    cosign_from_last(w, log)
    w.state_path.write_text('{"logs": {"x": ')
    with pytest.raises(ValueError, match="never delete it"):
        cosign_from_last(w, log)


def _edit_saved(w: Witness, edit) -> None:
    import json

    state = json.loads(w.state_path.read_text())
    edit(state["logs"][ORIGIN])
    w.state_path.write_text(json.dumps(state))


def _flip_signature(saved: dict) -> None:
    text, _, signature = saved["checkpoint"].rpartition("\u2014 ")
    saved["checkpoint"] = text + "\u2014 " + signature[:20] + ("A" if signature[20] != "A" else "B") + signature[21:]


@pytest.mark.parametrize("damage", ["signature", "root", "size"])
def test_a_saved_head_damaged_on_this_machine_is_named_not_blamed_on_the_log(make_witness, damage):
    """Re-verified before it judges the log: a saved checkpoint whose signature fails, or whose size or
    root beside it changed, is this file's damage; the honest log's next checkpoint is not "rewritten"."""
    import base64

    w, log = make_witness(), tree(9)
    cosign_from_last(w, log, 5)
    _edit_saved(w, {"signature": _flip_signature,
                    "root": lambda s: s.update(root=base64.b64encode(bytes(32)).decode()),
                    "size": lambda s: s.update(size=4)}[damage])
    with pytest.raises(StateFileError) as caught:
        cosign_from_last(w, log)
    said = str(caught.value)
    assert said.startswith(f"{w.state_path}: the witness state is damaged") and "restore it from a backup" in said
    assert "damaged on this machine, not by the coordinator" in said and "rewritten" not in said


def test_a_state_from_before_checkpoints_were_kept_is_read_and_upgraded(make_witness):
    import json

    w, log = make_witness(), tree(6)
    cosign_from_last(w, log, 4)
    _edit_saved(w, lambda s: s.pop("checkpoint"))
    cosign_from_last(w, log)
    assert json.loads(w.state_path.read_text())["logs"][ORIGIN]["checkpoint"].startswith(ORIGIN + "\n6\n")


def test_rollback_is_refused_and_changes_nothing(make_witness):
    w, log = make_witness(), tree(7)
    cosign_from_last(w, log)
    with pytest.raises(WitnessError) as caught:
        w.cosign(checkpoint(log, 5), [], LOG.verifier())
    assert caught.value.refusal is Refusal.ROLLBACK and "5 leaves, fewer than" in str(caught.value)
    assert w.last(ORIGIN) == SeenHead(7, log.root())


def test_split_view_at_the_same_size_is_refused(make_witness):
    w, honest, forked = make_witness(), tree(7), tree(7, fork_at=5)
    cosign_from_last(w, honest)
    with pytest.raises(WitnessError) as caught:
        w.cosign(checkpoint(forked), [], LOG.verifier())
    assert caught.value.refusal is Refusal.SPLIT_VIEW
    assert w.last(ORIGIN) == SeenHead(7, honest.root())


def test_a_fork_that_grew_is_inconsistent(make_witness):
    w, honest, forked = make_witness(), tree(7), tree(9, fork_at=5)
    cosign_from_last(w, honest)
    with pytest.raises(WitnessError) as caught:
        w.cosign(checkpoint(forked), forked.consistency_proof(7, 9), LOG.verifier())
    assert caught.value.refusal is Refusal.INCONSISTENT and "rewritten or forked" in str(caught.value)


@pytest.mark.parametrize("proof", ["tampered", "missing", "from another size"])
def test_bad_proofs_are_refused(make_witness, proof):
    w, log = make_witness(), tree(11)
    cosign_from_last(w, log, 6)
    good = log.consistency_proof(6, 11)
    bad = {"tampered": [good[0][:-1] + bytes([good[0][-1] ^ 1]), *good[1:]], "missing": [],
           "from another size": log.consistency_proof(5, 11)}[proof]
    with pytest.raises(WitnessError) as caught:
        w.cosign(checkpoint(log), bad, LOG.verifier())
    assert caught.value.refusal is Refusal.INCONSISTENT
    assert w.last(ORIGIN) == SeenHead(6, log.root(6))


def test_a_proof_with_nothing_to_prove_is_refused(make_witness):
    w, log = make_witness(), tree(6)
    with pytest.raises(WitnessError, match="from an empty log"):
        w.cosign(checkpoint(log), log.consistency_proof(3, 6), LOG.verifier())


def test_a_checkpoint_not_signed_by_the_log_is_refused(make_witness):
    w, log = make_witness(), tree(4)
    impostor = SigningKey(ORIGIN, ED25519, bytes(32))
    forged = sign_checkpoint(Checkpoint(ORIGIN, 4, log.root()), impostor)
    with pytest.raises(WitnessError) as caught:
        w.cosign(forged, [], LOG.verifier())
    assert caught.value.refusal is Refusal.BAD_SIGNATURE
    assert w.last(ORIGIN) is None


def test_a_failed_state_write_hands_out_no_cosignature(make_witness, monkeypatch):
    w, log = make_witness(), tree(4)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "write_atomic", disk_full)
    with pytest.raises(OSError):
        cosign_from_last(w, log)
    monkeypatch.undo()
    assert w.last(ORIGIN) is None


def test_two_processes_cannot_cosign_two_histories_at_once(make_witness):
    honest, forked = tree(7), tree(7, fork_at=3)
    witnesses = [make_witness(), make_witness()]  # one key, one state file, two handles
    start, results = threading.Barrier(2), []

    def run(w, t):
        start.wait()
        try:
            results.append(w.cosign(checkpoint(t), [], LOG.verifier()))
        except WitnessError as e:
            results.append(e.refusal)

    threads = [threading.Thread(target=run, args=args) for args in zip(witnesses, (honest, forked))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Refusal.SPLIT_VIEW in results and len(results) == 2


def test_split_view_between_departments_is_caught_by_name(make_witness):
    """A coordinator shows population one head and civil affairs another, same size."""
    population, civil, officer = make_witness("population"), make_witness("civil-affairs"), make_witness("officer")
    for w in (population, civil, officer):
        cosign_from_last(w, tree(100))
    shown_population, shown_civil = tree(103), tree(103, fork_at=101)
    to_population, to_civil = checkpoint(shown_population), checkpoint(shown_civil)
    to_population = to_population.with_signature(cosign_from_last(population, shown_population))
    to_civil = to_civil.with_signature(cosign_from_last(civil, shown_civil))
    # The coordinator can only pass civil affairs' cosignature on to population if it is over
    # population's head, and civil affairs will not sign that one: it already vouched for the other.
    with pytest.raises(WitnessError) as caught:
        civil.cosign(to_population, [], LOG.verifier())
    assert caught.value.refusal is Refusal.SPLIT_VIEW
    others = [civil.verifier, officer.verifier]
    with pytest.raises(CheckpointError, match=f"0 of the 1 .*not: {civil.key.name}, {officer.key.name}"):
        require_quorum(to_population, LOG.verifier(), others, 1)
    moved = to_population.with_signature(to_civil.signatures[-1])
    with pytest.raises(CheckpointError, match=f"bad cosignature: the signature by {civil.key.name}"):
        require_quorum(moved, LOG.verifier(), others, 1)
    # The officer, shown population's head, cosigns it; that is the quorum population asked for.
    to_population = to_population.with_signature(cosign_from_last(officer, shown_population))
    assert require_quorum(to_population, LOG.verifier(), others, 1).names == (officer.key.name,)


def test_keys_are_never_overwritten_and_must_be_cosignature_keys(tmp_path):
    path = tmp_path / "w.key"
    new_witness_key(path, "w.example/a")
    with pytest.raises(FileExistsError):
        new_witness_key(path, "w.example/a")
    log_key = tmp_path / "log.key"
    log_key.write_text(LOG.encode())
    with pytest.raises(ValueError, match="cosignature/v1"):
        load_witness_key(log_key)
    with pytest.raises(ValueError, match="cosignature/v1"):
        Witness(LOG, tmp_path / "state.json")
    assert load_witness_key(path).key_type == COSIGNATURE_V1
