"""fedlink's PKI: each party's key and certificate, the CA that signs them,
revocation, and gRPC mutual-TLS helpers.

Every party -- the coordinator, each department's agent, operators and
officers -- makes its own ECDSA P-256 key and a certificate request
(``ceremony.request``); the CA operator signs it (``ceremony.sign``) and sends
back a bundle (``ceremony.bundle``): the certificate, the CA certificate, the
CRL, the coordinator's log key (``audit-signing.vkey``), which every party
pins, and the project's witnesses file (``witnesses.toml``). A private key is
written once, mode 0600, in its owner's folder. Revoking a certificate writes
a new CRL (``revocation.revoke``), which the coordinator reloads without a
restart (``revocation.RevocationList``).

Each leaf carries exactly one SAN URI ``urn:fedlink:<role>:<department-or-name>``
(:func:`fedlink.identity.identity_uri`); that URI, not the common name and not
anything a client sends, is what the coordinator trusts. The coordinator's
certificate also names its DNS names and addresses.

``init_pki`` plays the whole ceremony at once for a demo or test deployment,
one folder per party and the CA in its own (``issuing``).
"""

from fedlink.pki.ceremony import AUDIT_KEY_FILE, Request, bundle, read_request, request, sign
from fedlink.pki.certificates import CA_DAYS, KEY_ALGORITHM, LEAF_DAYS
from fedlink.pki.channels import channel_credentials, server_credentials
from fedlink.pki.files import (
    AUDIT_VKEY_FILE, CA_CERT_FILE, CA_KEY_FILE, CRL_FILE, WITNESSES_FILE, Credentials, agent_party_name,
    credentials_for, party_folder,
)
from fedlink.pki.issuing import CA_FOLDER, init_pki, new_ca
from fedlink.pki.revocation import RevocationList, revoke

__all__ = [
    "AUDIT_KEY_FILE",
    "AUDIT_VKEY_FILE",
    "CA_CERT_FILE",
    "CA_FOLDER",
    "CA_KEY_FILE",
    "CA_DAYS",
    "CRL_FILE",
    "LEAF_DAYS",
    "WITNESSES_FILE",
    "KEY_ALGORITHM",
    "Credentials",
    "Request",
    "RevocationList",
    "bundle",
    "init_pki",
    "new_ca",
    "read_request",
    "request",
    "revoke",
    "sign",
    "credentials_for",
    "party_folder",
    "agent_party_name",
    "server_credentials",
    "channel_credentials",
]
