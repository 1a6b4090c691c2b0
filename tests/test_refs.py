"""Record references: AES-SIV (RFC 5297) under the department's key, so references
stored by an earlier version still decrypt, and another department's do not."""
import secrets

import pytest
from Crypto.Cipher import AES

from agents.refs import RefCipher, RefError


def _reference_siv(key: bytes, ad: bytes, record_id: str) -> bytes:
    """The construction as pycryptodome (an independent implementation, which
    made the references of earlier versions) computes it: tag, then ciphertext."""
    cipher = AES.new(key, AES.MODE_SIV)
    cipher.update(ad)
    ct, tag = cipher.encrypt_and_digest(record_id.encode())
    return tag + ct


@pytest.mark.parametrize("record_id", ["P0000001", "x", "户籍-110105-李·阿依古丽", "9" * 200])
def test_reference_is_aes_siv_with_project_and_department(record_id):
    key = secrets.token_bytes(64)
    cipher = RefCipher(key, "bench", "population")
    ref = cipher.encrypt(record_id)
    assert ref == _reference_siv(key, b"fedlink/v1/ref/bench/population", record_id)
    assert cipher.decrypt(ref) == record_id
    assert cipher.encrypt(record_id) == ref  # deterministic: monthly extracts line up


def test_other_department_project_key_or_a_cut_reference_does_not_decrypt():
    key = secrets.token_bytes(64)
    ref = RefCipher(key, "bench", "population").encrypt("P0000001")
    for other in (RefCipher(key, "bench", "education"), RefCipher(key, "other", "population"),
                  RefCipher(secrets.token_bytes(64), "bench", "population")):
        with pytest.raises(RefError, match="does not decrypt under this department's key"):
            other.decrypt(ref)
    for cut in (ref[:-1], ref[:16], b""):
        with pytest.raises(RefError):
            RefCipher(key, "bench", "population").decrypt(cut)
