"""The attack harness (bench.attacks): it breaks a weak control, and fedlink's default holds."""
from __future__ import annotations

import numpy as np
import pytest

from bench.attacks import balance, blip, run_attacks, xor_fold


@pytest.fixture(scope="module")
def result():
    return run_attacks(persons=2000, seed=0)


def test_attacks_break_the_weak_control(result):
    weak = result["attacks"]["weak_unkeyed_names"]
    # An unkeyed name-only Bloom filter falls to a dictionary of public names.
    assert weak["dictionary"]["reidentification_rate"] > 0.10
    assert weak["dictionary"]["precision"] > 0.9
    for attack in ("frequency_name", "pattern_mining"):
        assert 0.0 <= weak[attack]["reidentification_rate"] <= 1.0


def test_default_encoding_holds(result):
    ours = result["attacks"]["fedlink_default"]
    assert "dictionary" not in ours  # needs the project secret
    for attack, score in ours.items():
        assert score["reidentification_rate"] < 0.01, (attack, score)


def test_census_is_separate(result):
    assert result["census_seed"] != result["seed"]


def test_hardening_functions():
    rng = np.random.default_rng(0)
    f = np.packbits(rng.random((50, 1024)) < 0.3, axis=1)
    assert xor_fold(f).shape == (50, 64)
    b = balance(f, b"k")
    assert b.shape == (50, 256)
    assert (np.unpackbits(b, axis=1).sum(axis=1) == 1024).all()
    n = blip(f, 0.05, seed=1)
    flipped = (np.unpackbits(n, axis=1) != np.unpackbits(f, axis=1)).mean()
    assert 0.03 < flipped < 0.07


def test_run_with_hardening():
    r = run_attacks(persons=600, seed=1, hardening="xor", targets=("fedlink_default",))
    assert r["hardening"] == "xor"
    assert r["attacks"]["fedlink_default"]["pattern_mining"]["reidentification_rate"] < 0.01
