"""Keyed household tokens: what lets the coordinator evaluate a household's
members together without learning any household number.

A department that numbers households (population, civil affairs) sends, with
each record, HMAC-SHA-256 of its own household_id under a key derived from the
department's own reference key (never from the shared project secret), cut
to 16 bytes. What the coordinator learns from them is exactly which of that
department's records share a household:

- not the household number: a household_id is low-entropy (region code +
  sequence), but without the key nobody can test guesses, and the project
  secret does not give the key, so no other department can either;
- nothing across departments: each department's key and numbering are its
  own, so a population token never equals a civil affairs token; households
  meet only through the persons the coordinator has linked;
- across months, the same household keeps its token (as a record keeps its
  reference), which is what lets a household's flags be followed over runs.

The coordinator also learns household sizes on that register, which the
population agent's `lives_alone` indicator already says for households of one.
"""
from __future__ import annotations

import hashlib
import hmac

import pandas as pd

from fedlink.schema import HOUSEHOLD_TOKEN_BYTES


def household_key(ref_key: bytes, project_id: str, department: str) -> bytes:
    label = f"fedlink/v1/household-token/{project_id}/{department}".encode()
    return hmac.new(ref_key, label, hashlib.sha256).digest()


def household_tokens(household_ids: pd.Series, key: bytes) -> list[bytes]:
    """One token per row; b"" where the household is unknown (blank)."""
    ids = household_ids.fillna("").astype(str).str.strip().str.upper()
    return [hmac.new(key, h.encode(), hashlib.sha256).digest()[:HOUSEHOLD_TOKEN_BYTES] if h else b""
            for h in ids]
