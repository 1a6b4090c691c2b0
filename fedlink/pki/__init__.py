"""A small development / pilot PKI for fedlink, and gRPC mutual-TLS helpers.

``init_pki`` creates a self-signed CA and one certificate per party:

* ``coordinator``            -- TLS server (serverAuth), SAN DNS ``localhost``,
  IP ``127.0.0.1`` and ``::1`` plus any extra host names / addresses;
* ``agent-<department>``     -- TLS client (clientAuth), one per department;
* operators and officers     -- TLS clients (clientAuth), under the names given.

Each leaf carries exactly one SAN URI ``urn:fedlink:<role>:<department-or-name>``
(:func:`fedlink.identity.identity_uri`); that URI, not the common name and not
anything a client sends, is what the coordinator trusts.

Keys are ECDSA P-256 (see ``KEY_ALGORITHM``), written unencrypted as PKCS#8 PEM
with mode 0600.  This is a convenience PKI: the CA key lives in the same
directory as the leaves.  For production, keep ``ca.key`` offline (or use the
organisation's own CA) and distribute each party only its own ``<name>.pem``,
``<name>.key`` and ``ca.pem``.

Layout: ``certificates`` builds the CA and the leaves, ``files`` writes and
finds them (``Credentials``), ``issuing`` holds ``init_pki`` and ``issue``,
``channels`` the gRPC credentials.
"""

from fedlink.pki.certificates import CA_DAYS, KEY_ALGORITHM, LEAF_DAYS
from fedlink.pki.channels import channel_credentials, server_credentials
from fedlink.pki.files import CA_CERT_FILE, CA_KEY_FILE, Credentials, agent_party_name, credentials_for
from fedlink.pki.issuing import init_pki, issue

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CA_DAYS",
    "LEAF_DAYS",
    "KEY_ALGORITHM",
    "Credentials",
    "init_pki",
    "issue",
    "credentials_for",
    "agent_party_name",
    "server_credentials",
    "channel_credentials",
]
