"""gRPC mutual-TLS credentials from a party's files."""
from __future__ import annotations

from fedlink.pki.files import Credentials


def server_credentials(creds: Credentials):
    """gRPC server credentials requiring and verifying client certificates."""
    import grpc

    cert, key, ca = creds.load()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(creds: Credentials):
    """gRPC channel credentials: verify the server against the CA, present our certificate."""
    import grpc

    cert, key, ca = creds.load()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
