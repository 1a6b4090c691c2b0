"""Encoding health checks (server.health) on real and broken encodings."""
from __future__ import annotations

import numpy as np
import pytest

from agents.encoding import Encoder, dice
from agents.normalise import normalise_record
from bench.synth import build, render_department
from fedlink.schema import LinkageSchema
from server.health import encoding_health
from server.matching import pack_filters

SCHEMA = LinkageSchema()


@pytest.fixture(scope="module")
def features():
    world = build(3000, 0)
    frame, _ = render_department(world, "population", 0)
    return [normalise_record(r) for r in frame.astype(str).to_dict("records")]


@pytest.fixture(scope="module")
def encoded(features):
    return Encoder(SCHEMA, b"project secret one", "health-test").encode(features)


def test_real_encoding_is_healthy(encoded):
    report = encoding_health(pack_filters(encoded, SCHEMA.filter_bits))
    assert report.healthy, report.warnings
    assert 0.2 < report.fill_rate < 0.8
    assert report.max_duplicates <= report.duplicate_limit
    assert report.records == len(encoded) and report.filter_bits == 1024
    assert report.position_max <= 0.95 and report.position_min >= 0.01
    assert report.to_dict()["healthy"] is True


def test_all_zero_filters_flagged():
    report = encoding_health(np.zeros((2000, 16), dtype=np.uint64))
    assert not report.healthy
    assert report.fill_rate == 0.0 and report.empty_filters == 2000
    assert any("fill rate" in w for w in report.warnings)


def test_duplicated_filter_flagged(encoded):
    filters = pack_filters(encoded, SCHEMA.filter_bits).copy()
    filters[100:130] = filters[7]  # 31 records share one filter
    report = encoding_health(filters)
    assert report.max_duplicates == 31
    assert any("identical filter" in w for w in report.warnings)


def test_constant_bit_flagged(encoded):
    filters = pack_filters(encoded, SCHEMA.filter_bits).copy()
    filters[:, 3] |= np.uint64(1) << np.uint64(63 - 5)  # filter bit 3*64 + 5 set everywhere
    report = encoding_health(filters)
    assert 3 * 64 + 5 in report.constant_positions
    assert any("more than 95%" in w for w in report.warnings)


def test_other_secret_scores_at_chance(features, encoded):
    """The same records under another secret agree no more than independent random filters would."""
    other = Encoder(SCHEMA, b"project secret two", "health-test").encode(features[:500])
    same_input = np.array([dice(a.tobytes(), b.tobytes()) for a, b in zip(encoded[:500], other)])
    fill_a = np.array([np.unpackbits(np.frombuffer(a.tobytes(), np.uint8)).mean() for a in encoded[:500]])
    fill_b = np.array([np.unpackbits(np.frombuffer(b.tobytes(), np.uint8)).mean() for b in other])
    # Two independent filters with fill rates p and q share p*q of their bits: Dice 2pq / (p + q).
    chance = 2 * fill_a * fill_b / (fill_a + fill_b)
    assert abs(same_input.mean() - chance.mean()) < 0.02
    assert same_input.max() < SCHEMA.threshold


def test_uniform_random_filters_are_healthy():
    rng = np.random.default_rng(1)
    filters = rng.integers(0, 2**64, size=(200_000, 16), dtype=np.uint64)
    report = encoding_health(filters)
    assert report.healthy, report.warnings
    assert abs(report.fill_rate - 0.5) < 0.01
    assert report.max_duplicates == 1 and report.distinct_filters == 200_000
    # Per-position counts of uniform bits: chi-square per degree of freedom near 1 - fill.
    assert 0.3 < report.chi2_per_dof < 0.7
