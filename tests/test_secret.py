"""The project secret: made only by `fedlink secret new`, 256 random bits in a
self-checking form; an agent refuses a passphrase or a damaged secret with a
message naming the file and how to make a good one."""
from __future__ import annotations

import base64
import subprocess

import pytest

from agents.secret import PREFIX, SecretError, decode_secret, read_secret
from procs import FEDLINK


def test_a_new_secret_is_256_random_bits_in_the_checked_form(tmp_path):
    for name in ("a", "b"):
        done = subprocess.run([*FEDLINK, "secret", "new", "--out", name], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    a, b = (tmp_path / "a").read_text().strip(), (tmp_path / "b").read_text().strip()
    assert a.startswith(PREFIX) and a != b
    assert len(read_secret(tmp_path / "a")) == 32 and read_secret(tmp_path / "a") != read_secret(tmp_path / "b")
    assert (tmp_path / "a").stat().st_mode & 0o077 == 0
    again = subprocess.run([*FEDLINK, "secret", "new", "--out", "a"], cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 2 and "never overwritten" in again.stderr
    assert (tmp_path / "a").read_text().strip() == a


@pytest.mark.parametrize("text", ["fedlink-pilot-2025", "0123456789abcdef" * 4, PREFIX + "short-00000000", ""])
def test_anything_but_a_made_secret_is_refused(text):
    with pytest.raises(SecretError, match=r"x\.secret: not a fedlink project secret.*fedlink secret new --out"):
        decode_secret(text, "x.secret")


def test_a_damaged_secret_fails_its_checksum(tmp_path):
    good = tmp_path / "s"
    subprocess.run([*FEDLINK, "secret", "new", "--out", str(good)], check=True, capture_output=True)
    text = good.read_text().strip()
    body = text[len(PREFIX):-9]
    flipped = body[:10] + ("a" if body[10] != "a" else "b") + body[11:]  # one letter mistyped in transit
    assert len(base64.b32decode(flipped.upper() + "====")) == 32
    with pytest.raises(SecretError, match="checksum does not match"):
        decode_secret(PREFIX + flipped + text[-9:], "s")


def test_an_agent_with_a_passphrase_stops_before_encoding_anything(agent_config, project, tmp_path):
    weak = tmp_path / "weak.secret"
    weak.write_text("fedlink-pilot-2025\n")
    config = agent_config("population", secret=weak)
    done = subprocess.run([*FEDLINK, "agent", "upload", "--config", str(config), "--quiet"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "project.secret: not a fedlink project secret" in done.stderr
    assert "fedlink secret new --out FILE" in done.stderr and "Traceback" not in done.stderr
