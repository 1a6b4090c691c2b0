"""fedlink.note and fedlink.checkpoint: C2SP signed notes, checkpoints, cosignatures, quorum.

Fixed vectors come from outside fedlink: Go's golang.org/x/mod/sumdb/note
test key and signature, and the example checkpoint of c2sp.org/tlog-cosignature.
The Go interop tests at the end run Go's note package on our output and ours
on Go's (scripts/go-interop installs Go; here they skip without it).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from fedlink import merkle
from fedlink.checkpoint import (
    Checkpoint,
    CheckpointError,
    cosign,
    cosigners,
    open_checkpoint,
    parse_checkpoint,
    require_quorum,
    sign_checkpoint,
)
from fedlink.note import (
    COSIGNATURE_V1,
    ED25519,
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Note,
    NoteError,
    Signature,
    SigningKey,
    VerifierKey,
    parse,
    sign,
    verify,
)

ORIGIN = "fedlink.example.gov.cn/pilot-2025"
ROOT = hashlib.sha256(b"a root").digest()

# golang.org/x/mod/sumdb/note, note_test.go (TestNewVerifier, TestSign).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_NOTE = PETER_TEXT + ("\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FF"
                           "YC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")

# c2sp.org/tlog-cosignature, the example checkpoint with one cosignature.
SPEC_EXAMPLE = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9"
    "nTo+zyWE+xeMcTOAYQ8=\n"
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
    "qhf5nNo0xUe+mbIUBkBIfZ+qnA==\n")

LOG = SigningKey.generate(ORIGIN, ED25519)
WITNESSES = [SigningKey.generate(f"fedlink.example.gov.cn/witness/{n}", COSIGNATURE_V1)
             for n in ("population", "civil-affairs", "officer")]


def witness_keys(*indices: int) -> list[VerifierKey]:
    return [WITNESSES[i].verifier() for i in indices]


def signed(size: int = 5, root: bytes = ROOT, cosigned_by=(0, 1), timestamp: int = 1_750_000_000) -> Note:
    note = sign_checkpoint(Checkpoint(ORIGIN, size, root), LOG)
    for i in cosigned_by:
        note = cosign(note, WITNESSES[i], timestamp + i)
    return note


# -- fixed vectors -------------------------------------------------------------------


def test_go_test_vector_signs_and_verifies_byte_for_byte():
    key = SigningKey.parse(PETER_SKEY)
    assert key.encode() == PETER_SKEY
    assert key.verifier().encode() == PETER_VKEY
    assert str(sign(PETER_TEXT, key)) == PETER_NOTE
    note, keys = verify(PETER_NOTE.encode(), [VerifierKey.parse(PETER_VKEY)])
    assert note.text == PETER_TEXT and keys == (VerifierKey.parse(PETER_VKEY),)
    assert VerifierKey.parse(PETER_VKEY).key_id == bytes.fromhex("c74f20a3")


def test_spec_example_parses_into_checkpoint_and_timestamped_cosignature():
    note = parse(SPEC_EXAMPLE)
    assert str(note) == SPEC_EXAMPLE
    checkpoint = parse_checkpoint(note.text)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    assert checkpoint.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    log_line, cosignature = note.signatures
    assert len(log_line.data) == 64
    assert cosignature.name == "witness.example.com/w1" and cosignature.key_id == bytes.fromhex("8d66cf3f")
    assert len(cosignature.data) == 8 + 64
    assert struct.unpack(">Q", cosignature.data[:8])[0] == 1679315147  # the spec's "time 1679315147"
    with pytest.raises(NoteError, match="signed by no known key"):
        verify(SPEC_EXAMPLE, [LOG.verifier()])


def test_cosignature_message_is_the_spec_layout():
    from fedlink.note import cosignature_message

    assert cosignature_message("example.com/behind-the-sofa\n20852163\nCsUY=\n", 1679315147) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUY=\n")


def test_cosignature_key_id_uses_type_0x04():
    w = WITNESSES[0].verifier()
    assert w.key_id == hashlib.sha256(w.name.encode() + b"\n\x04" + w.public_key).digest()[:4]
    assert w.key_id != VerifierKey(w.name, ED25519, w.public_key).key_id


# -- round trips ---------------------------------------------------------------------


def test_checkpoint_text_is_three_lines_plus_extensions():
    assert Checkpoint(ORIGIN, 5, ROOT).text() == f"{ORIGIN}\n5\n{base64.b64encode(ROOT).decode()}\n"
    with_extension = Checkpoint(ORIGIN, 5, ROOT, ("time 17",))
    assert parse_checkpoint(with_extension.text()) == with_extension
    assert parse_checkpoint(Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT).text()).size == 0


def test_signed_checkpoint_round_trips_through_bytes():
    note = signed()
    checkpoint, reread = open_checkpoint(note.to_bytes(), LOG.verifier())
    assert checkpoint == Checkpoint(ORIGIN, 5, ROOT) and reread == note
    found = cosigners(note.to_bytes(), LOG.verifier(), witness_keys(0, 1, 2))
    assert found.cosigners == ((WITNESSES[0].name, 1_750_000_000), (WITNESSES[1].name, 1_750_000_001))


def test_keys_round_trip_and_reject_a_wrong_hash_type_or_length():
    w = WITNESSES[1]
    assert SigningKey.parse(w.encode()) == w and VerifierKey.parse(w.verifier().encode()) == w.verifier()
    name, key_hex, data = PETER_VKEY.split("+", 2)
    raw = base64.b64decode(data)
    type_2, long_key = (base64.b64encode(b).decode() for b in (bytes([2]) + raw[1:], raw + b"x"))
    for bad in (f"{name}+c74f20a4+{data}",  # key ID off by one
                f"{name}+{key_hex}+{type_2}", f"{name}+{key_hex}+{long_key}",
                f"Peter Neumann+{key_hex}+{data}", f"{name}+{key_hex}", "PRIVATE+KEY+" + PETER_VKEY):
        with pytest.raises(NoteError):
            VerifierKey.parse(bad)
    with pytest.raises(NoteError, match="PRIVATE"):
        SigningKey.parse(PETER_VKEY)


def test_log_key_must_be_named_for_the_origin():
    other = SigningKey.generate("another.example/log", ED25519)
    with pytest.raises(CheckpointError, match="log key is named"):
        sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), other)
    # Signed by hand under another name, it does not open as this log's checkpoint either.
    forged = sign(Checkpoint(ORIGIN, 5, ROOT).text(), other)
    with pytest.raises(CheckpointError, match="log key is named"):
        open_checkpoint(forged, other.verifier())
    with pytest.raises(CheckpointError, match="not a checkpoint signed by the log"):
        open_checkpoint(forged, LOG.verifier())


@pytest.mark.parametrize("text, reason", [
    (f"{ORIGIN}\n05\n{base64.b64encode(ROOT).decode()}\n", "leading zeros"),
    (f"{ORIGIN}\n-5\n{base64.b64encode(ROOT).decode()}\n", "decimal"),
    (f"{ORIGIN}\n5\n{base64.b64encode(ROOT).decode()}", "ends in a newline"),
    (f"{ORIGIN}\n5\n", "at least 3 lines"),
    (f"\n5\n{base64.b64encode(ROOT).decode()}\n", "origin"),
    (f"{ORIGIN}\n5\n{base64.b64encode(ROOT[:31]).decode()}\n", "32 bytes"),
    (f"{ORIGIN}\n5\n{base64.b64encode(ROOT).decode().rstrip('=')}\n", "base64"),
    (f"{ORIGIN}\n5\n{base64.b64encode(ROOT).decode()}\n\n", "extension lines"),
    (f"{ORIGIN}\n0\n{base64.b64encode(ROOT).decode()}\n", "empty tree"),
])
def test_malformed_checkpoints_say_why(text, reason):
    with pytest.raises(CheckpointError, match=reason):
        parse_checkpoint(text)


# -- tampering -----------------------------------------------------------------------


def _quorum_of_two(message) -> None:
    require_quorum(message, LOG.verifier(), witness_keys(0, 1, 2), 2)


def test_every_single_character_change_is_caught():
    message = str(signed())
    _quorum_of_two(message)
    for i, c in enumerate(message):
        tampered = message[:i] + ("x" if c != "x" else "y") + message[i + 1:]
        with pytest.raises((NoteError, CheckpointError)):
            _quorum_of_two(tampered)


@pytest.mark.parametrize("where", ["after the text", "between signatures", "at the end"])
def test_an_extra_blank_line_breaks_the_note(where):
    note = signed()
    lines = "".join(s.line() for s in note.signatures)
    first, *rest = (s.line() for s in note.signatures)
    message = {"after the text": note.text + "\n\n" + lines,
               "between signatures": note.text + "\n" + first + "\n" + "".join(rest),
               "at the end": str(note) + "\n"}[where]
    with pytest.raises((NoteError, CheckpointError)):
        _quorum_of_two(message)


def _replace_signature(note: Note, index: int, **changes) -> Note:
    old = note.signatures[index]
    new = Signature(changes.get("name", old.name), changes.get("key_id", old.key_id), changes.get("data", old.data))
    return Note(note.text, note.signatures[:index] + (new,) + note.signatures[index + 1:])


def test_tampered_timestamp_key_id_signature_and_origin_fail():
    note = signed()
    cosig = note.signatures[1]
    later = struct.pack(">Q", struct.unpack(">Q", cosig.data[:8])[0] + 1) + cosig.data[8:]
    with pytest.raises(CheckpointError, match="bad cosignature"):
        _quorum_of_two(_replace_signature(note, 1, data=later))
    flipped = bytes([cosig.data[-1] ^ 1])
    with pytest.raises(CheckpointError, match="bad cosignature"):
        _quorum_of_two(_replace_signature(note, 1, data=cosig.data[:-1] + flipped))
    # Another key ID makes the line someone else's: ignored, so the quorum is one short.
    with pytest.raises(CheckpointError, match="1 of the 2"):
        _quorum_of_two(_replace_signature(note, 1, key_id=b"\0\0\0\0"))
    with pytest.raises(CheckpointError, match="not a checkpoint signed by the log"):
        _quorum_of_two(_replace_signature(note, 0, key_id=b"\0\0\0\0"))
    other_origin = Note(note.text.replace(ORIGIN, ORIGIN + "-b"), note.signatures)
    with pytest.raises(CheckpointError, match="not a checkpoint signed by the log"):
        _quorum_of_two(other_origin)


def test_a_cosignature_moved_to_another_checkpoint_fails():
    a, b = signed(size=5), signed(size=6, cosigned_by=())
    moved = b.with_signature(a.signatures[1])
    with pytest.raises(CheckpointError, match="bad cosignature"):
        cosigners(moved, LOG.verifier(), witness_keys(0))


# -- quorum --------------------------------------------------------------------------


def test_quorum_names_who_cosigned_and_who_did_not():
    note = signed(cosigned_by=(0, 2))
    assert require_quorum(note, LOG.verifier(), witness_keys(0, 1, 2), 2).names == (WITNESSES[0].name,
                                                                                  WITNESSES[2].name)
    with pytest.raises(CheckpointError) as caught:
        require_quorum(note, LOG.verifier(), witness_keys(0, 1, 2), 3)
    assert "2 of the 3" in str(caught.value) and f"not: {WITNESSES[1].name}" in str(caught.value)


def test_quorum_counts_distinct_witnesses_only():
    note = signed(cosigned_by=(0,))
    twice = Note(note.text, note.signatures + (note.signatures[1],))
    listed_twice = witness_keys(0, 0)
    renamed = SigningKey("another.name/same-key", COSIGNATURE_V1, WITNESSES[0].seed)
    same_key_two_names = cosign(note, renamed, 1_750_000_009)
    for message, keys in ((twice, witness_keys(0)), (note, listed_twice),
                          (same_key_two_names, [*witness_keys(0), renamed.verifier()])):
        assert len(cosigners(message, LOG.verifier(), keys).cosigners) == 1
        with pytest.raises(CheckpointError, match="1 of the 2"):
            require_quorum(message, LOG.verifier(), keys, 2)


def test_quorum_ignores_unknown_cosigners_and_the_log_signature():
    stranger = SigningKey.generate("stranger.example/w", COSIGNATURE_V1)
    note = cosign(signed(cosigned_by=()), stranger, 1)
    assert cosigners(note, LOG.verifier(), [*witness_keys(0, 1), LOG.verifier()]).cosigners == ()
    assert cosigners(note, LOG.verifier(), [stranger.verifier()]).names == (stranger.name,)


# -- limits and format ---------------------------------------------------------------


def test_signature_limit_and_size_limit():
    note = signed(cosigned_by=())
    strangers = tuple(SigningKey.generate(f"s.example/{i}", ED25519).sign(note.text) for i in range(99))
    at_limit = Note(note.text, note.signatures + strangers)
    assert len(at_limit.signatures) == MAX_SIGNATURES
    open_checkpoint(str(at_limit), LOG.verifier())
    over = Note(note.text, at_limit.signatures + (strangers[0],))
    with pytest.raises(NoteError, match="more than the 100"):
        parse(str(over))
    with pytest.raises(NoteError, match="bytes, more than"):
        parse("x" * MAX_NOTE_BYTES + str(note))


@pytest.mark.parametrize("message, reason", [
    ("text\n\n- name AAAAAAA=\n", "em dash"),
    ("text\n\n\u2014 name AAAA\n", "shorter"),
    ("text\n\n\u2014 na+me AAAAAAA=\n", "key name"),
    ("text\n\n\u2014 name AAAAAAA\n", "base64"),
    ("text\n\u2014 name AAAAAAA=\n", "blank line"),
    ("text\n\n", "no signature lines"),
    ("text\n\n\u2014 name AAAAAAA=", "no signature lines"),
    ("te\txt\n\n\u2014 name AAAAAAA=\n", "control character"),
    (b"t\xffext\n\n\xe2\x80\x94 name AAAAAAA=\n", "UTF-8"),
])
def test_malformed_notes_say_why(message, reason):
    with pytest.raises(NoteError, match=reason):
        parse(message)


def test_noncanonical_base64_in_a_signature_is_refused():
    line = signed(cosigned_by=()).signatures[0].line()
    # 68 bytes end in one '=' and two unused bits; setting them changes the text, not the bytes.
    encoded = line.split(" ")[-1].strip()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    loose = encoded[:-2] + alphabet[alphabet.index(encoded[-2]) | 1] + "="
    assert base64.b64decode(loose) == base64.b64decode(encoded) and loose != encoded
    with pytest.raises(NoteError, match="base64"):
        parse(signed(cosigned_by=()).text + "\n" + line.replace(encoded, loose))


# -- Go interop ----------------------------------------------------------------------

INTEROP = Path(__file__).parent / "interop" / "note_interop.go"
GO_NOTE = Path("/usr/share/gocode/src/golang.org/x/mod/sumdb/note")


@pytest.fixture(scope="module")
def go_interop(tmp_path_factory) -> Path:
    missing = [what for what, ok in (("go (Debian golang-go)", shutil.which("go")),
                                     (f"{GO_NOTE} (Debian golang-golang-x-mod-dev)", GO_NOTE.is_dir())) if not ok]
    if missing:
        if os.environ.get("FEDLINK_REQUIRE_GO"):
            pytest.fail(f"FEDLINK_REQUIRE_GO is set but {', '.join(missing)} is missing")
        pytest.skip(f"Go interop needs {', '.join(missing)}; scripts/go-interop installs them")
    out = tmp_path_factory.mktemp("go") / "note_interop"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOFLAGS": "",
           "GOCACHE": str(out.parent / "cache"), "GOPROXY": "off"}
    subprocess.run(["go", "build", "-o", str(out), str(INTEROP)], env=env, check=True, timeout=240)
    return out


def _go(binary: Path, mode: str, request: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), mode], input=json.dumps(request), capture_output=True, text=True,
                          timeout=60)


def test_go_interop_verifies_fedlink_checkpoint_and_cosignatures(go_interop):
    stranger = SigningKey.generate("stranger.example/w", COSIGNATURE_V1)
    note = cosign(signed(size=103, cosigned_by=(0, 1)), stranger, 7)
    request = {"note": str(note), "log_vkey": LOG.verifier().encode(),
               "witness_vkeys": [k.encode() for k in witness_keys(0, 1, 2)]}
    done = _go(go_interop, "verify", request)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["text"] == note.text
    assert answer["verified"] == [ORIGIN, WITNESSES[0].name, WITNESSES[1].name]
    # Go rejects what fedlink rejects: a cosignature with its time moved on.
    cosig = note.signatures[1]
    later = struct.pack(">Q", struct.unpack(">Q", cosig.data[:8])[0] + 1) + cosig.data[8:]
    done = _go(go_interop, "verify", {**request, "note": str(_replace_signature(note, 1, data=later))})
    assert done.returncode == 1 and "invalid signature" in done.stderr


def test_go_interop_checkpoint_signed_in_go_verifies_here(go_interop):
    root = merkle.root_from_leaf_hashes([merkle.leaf_hash(b"%d" % i) for i in range(9)])
    request = {"origin": ORIGIN, "size": 9, "root": base64.b64encode(root).decode(),
               "witness_name": "go.example/witness", "timestamp": 1_700_000_123}
    done = _go(go_interop, "sign", request)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    log_key, witness = VerifierKey.parse(answer["log_vkey"]), VerifierKey.parse(answer["witness_vkey"])
    assert (log_key.key_type, witness.key_type) == (ED25519, COSIGNATURE_V1)
    cosigned = require_quorum(answer["note"], log_key, [witness], 1)
    assert cosigned.checkpoint == Checkpoint(ORIGIN, 9, root)
    assert cosigned.cosigners == (("go.example/witness", 1_700_000_123),)
