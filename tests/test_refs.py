"""Record references (agents/refs.py): the same bytes earlier agents made with
pycryptodome's AES-SIV, so stored references and worklists still match after
the agent moved to OpenSSL's; and a reference from another department or
project does not decrypt."""
from __future__ import annotations

import pytest
from Crypto.Cipher import AES
from hypothesis import given, settings, strategies as st

from agents.refs import KEY_BYTES, RefCipher, RefError


def _earlier_agents(key: bytes, project_id: str, department: str, record_id: str) -> bytes:
    """How agents encrypted references before (pycryptodome, a cipher per record)."""
    cipher = AES.new(key, AES.MODE_SIV)
    cipher.update(f"fedlink/v1/ref/{project_id}/{department}".encode())
    ct, tag = cipher.encrypt_and_digest(record_id.encode())
    return tag + ct


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=KEY_BYTES, max_size=KEY_BYTES), project_id=st.text(min_size=1, max_size=20),
       record_id=st.text(min_size=1, max_size=40))
def test_references_are_the_bytes_earlier_agents_made_and_decrypt(key, project_id, record_id):
    cipher = RefCipher(key, project_id, "population")
    ref = cipher.encrypt(record_id)
    assert ref == _earlier_agents(key, project_id, "population", record_id)
    assert cipher.decrypt(ref) == record_id


def test_a_reference_of_another_department_or_project_does_not_decrypt():
    key = bytes(range(KEY_BYTES))
    ref = RefCipher(key, "pilot", "population").encrypt("P-0001")
    for other in (RefCipher(key, "pilot", "education"), RefCipher(key, "other", "population")):
        with pytest.raises(RefError, match="does not decrypt under this department's key"):
            other.decrypt(ref)
    with pytest.raises(RefError):
        RefCipher(key, "pilot", "population").decrypt(ref[:10])
