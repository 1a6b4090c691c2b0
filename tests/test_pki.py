"""fedlink.pki / fedlink.identity: real certificates, real mutual TLS, real gRPC on loopback."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedlink.identity import (
    Identity,
    IdentityError,
    identity_from_certificate,
    identity_from_grpc_context,
    identity_uri,
)
from fedlink.pki import (
    Credentials,
    channel_credentials,
    credentials_for,
    init_pki,
    request,
    server_credentials,
    sign,
)

SERVICE = "fedlink.test.Whoami"
METHOD = f"/{SERVICE}/Who"
TIMEOUT = 10


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[Path, dict[str, Credentials]]:
    d = tmp_path_factory.mktemp("pki")
    creds = init_pki(
        d,
        ["population", "medical_insurance"],
        operators=("ops-1",),
        officers=("officer",),
        hostnames=("coordinator.example.org", "10.1.2.3"),
    )
    return d, creds


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory) -> dict[str, Credentials]:
    """A second, unrelated CA: nothing it issued may be trusted by the first."""
    return init_pki(tmp_path_factory.mktemp("other-pki"), ["population"], operators=("ops-1",))


def _whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
    try:
        return str(identity_from_grpc_context(context)).encode()
    except IdentityError as exc:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))


def _start_server(server_creds: grpc.ServerCredentials | None) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {"Who": grpc.unary_unary_rpc_method_handler(_whoami)},  # no (de)serializers: raw bytes
    )
    server.add_generic_rpc_handlers((handler,))
    if server_creds is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", server_creds)
    assert port, "could not bind a loopback port"
    server.start()
    return server, port


@pytest.fixture(scope="module")
def coordinator(pki):
    _, creds = pki
    server, port = _start_server(server_credentials(creds["coordinator"]))
    yield port
    server.stop(None)


def _call(port: int, creds: grpc.ChannelCredentials | None, host: str = "127.0.0.1") -> str:
    target = f"{host}:{port}"
    channel = grpc.insecure_channel(target) if creds is None else grpc.secure_channel(target, creds)
    with channel:
        return channel.unary_unary(METHOD)(b"", timeout=TIMEOUT).decode()


def _call_fails(port: int, creds: grpc.ChannelCredentials | None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _call(port, creds)
    return info.value


# --------------------------------------------------------------------------
# mutual TLS over gRPC


def test_agent_is_seen_with_its_department(pki, coordinator):
    _, creds = pki
    assert _call(coordinator, channel_credentials(creds["agent-population"])) == "agent:population"
    assert (
        _call(coordinator, channel_credentials(creds["agent-medical_insurance"]))
        == "agent:medical_insurance"
    )


def test_operator_and_officer_are_seen(pki, coordinator):
    _, creds = pki
    assert _call(coordinator, channel_credentials(creds["ops-1"])) == "operator:ops-1"
    assert _call(coordinator, channel_credentials(creds["officer"])) == "officer:officer"


def test_coordinator_certificate_names_localhost(pki, coordinator):
    # SAN DNS:localhost lets clients dial "localhost" as well as 127.0.0.1.
    _, creds = pki
    assert _call(coordinator, channel_credentials(creds["agent-population"]), host="localhost") == (
        "agent:population"
    )


def test_client_certificate_from_another_ca_is_refused(pki, coordinator, other_pki):
    # The client trusts our CA (so the server side of the handshake is fine)
    # but presents a certificate issued by a foreign CA: the server rejects it.
    _, creds = pki
    foreign_cert, foreign_key, _ = other_pki["agent-population"].load()
    _, _, our_ca = creds["agent-population"].load()
    err = _call_fails(
        coordinator,
        grpc.ssl_channel_credentials(
            root_certificates=our_ca, private_key=foreign_key, certificate_chain=foreign_cert
        ),
    )
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_party_of_another_pki_is_refused_entirely(coordinator, other_pki):
    err = _call_fails(coordinator, channel_credentials(other_pki["ops-1"]))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_coordinator_from_another_ca_is_refused_by_client(pki, other_pki):
    # Server authentication: a "coordinator" certified by a CA the client
    # does not trust is refused by the client.
    _, creds = pki
    server, port = _start_server(server_credentials(other_pki["coordinator"]))
    try:
        err = _call_fails(port, channel_credentials(creds["agent-population"]))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None)


def test_client_without_certificate_is_refused(pki, coordinator):
    _, creds = pki
    _, _, ca = creds["agent-population"].load()
    err = _call_fails(coordinator, grpc.ssl_channel_credentials(root_certificates=ca))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_client_is_refused(coordinator):
    err = _call_fails(coordinator, None)
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_server_only_certificate_cannot_be_used_as_client(pki, coordinator):
    # ExtendedKeyUsage is enforced: the coordinator's certificate is
    # serverAuth only, so it cannot impersonate a client ...
    _, creds = pki
    err = _call_fails(coordinator, channel_credentials(creds["coordinator"]))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_client_only_certificate_cannot_serve(pki):
    # ... and a party's clientAuth certificate cannot impersonate the coordinator.
    _, creds = pki
    server, port = _start_server(server_credentials(creds["agent-population"]))
    try:
        err = _call_fails(port, channel_credentials(creds["ops-1"]))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None)


def test_insecure_server_yields_no_identity():
    # On a plaintext connection there is no verified certificate to read.
    server, port = _start_server(None)
    try:
        err = _call_fails(port, None)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "mutual TLS" in err.details()
    finally:
        server.stop(None)


def test_a_department_added_later_keeps_its_key_to_itself(pki, coordinator, tmp_path):
    d, _ = pki
    tax = tmp_path / "tax"
    csr = request(tax, "agent", department="tax")
    key_before = (tax / "agent-tax.key").read_bytes()
    sign(csr, d / "ca", tax / "agent-tax.pem")
    (tax / "ca.pem").write_bytes((d / "ca" / "ca.pem").read_bytes())
    creds = credentials_for(tax, "agent-tax")
    assert stat.S_IMODE(creds.key.stat().st_mode) == 0o600
    assert creds.key.read_bytes() == key_before  # signing never touched (or saw) the key
    assert _call(coordinator, channel_credentials(creds)) == "agent:tax"
    with pytest.raises(FileExistsError):
        request(tax, "agent", department="tax")


# --------------------------------------------------------------------------
# certificates and files


def test_certificate_contents(pki):
    _, creds = pki
    ca = x509.load_pem_x509_certificate(creds["coordinator"].ca.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3650

    coord = x509.load_pem_x509_certificate(creds["coordinator"].cert.read_bytes())
    assert isinstance(coord.public_key(), ec.EllipticCurvePublicKey)
    assert coord.public_key().curve.name == "secp256r1"
    assert coord.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(coord.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    san = coord.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:fedlink:coordinator:coordinator"]
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "coordinator.example.org"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.1.2.3"),
    }
    assert 364 <= (coord.not_valid_after_utc - coord.not_valid_before_utc).days <= 366
    coord.verify_directly_issued_by(ca)

    agent = x509.load_pem_x509_certificate(creds["agent-population"].cert.read_bytes())
    assert list(agent.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert identity_from_certificate(creds["agent-population"].cert.read_bytes()) == Identity(
        role="agent", name="agent-population", department="population"
    )
    assert identity_from_certificate(creds["coordinator"].cert.read_bytes()) == Identity(
        role="coordinator", name="coordinator", department=""
    )


def test_init_pki_returns_every_party(pki):
    d, creds = pki
    assert set(creds) == {"coordinator", "agent-population", "agent-medical_insurance", "ops-1", "officer",
                          "console"}
    assert identity_from_certificate(creds["console"].cert.read_bytes()) == Identity("console", "console")
    for party, c in creds.items():
        assert c == credentials_for(d, party)
        cert, key, ca = c.load()
        assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
        assert b"PRIVATE KEY" in key
        assert ca == (d / "ca" / "ca.pem").read_bytes()


def test_key_files_are_private(pki):
    d, creds = pki
    keys = [d / "ca" / "ca.key", d / "coordinator" / "audit-signing.key"] + [c.key for c in creds.values()]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert not any(p.name.endswith(".tmp") for p in d.rglob("*"))


def test_each_party_folder_holds_only_its_own_key(pki):
    d, creds = pki
    assert {p.name for p in d.rglob("*.key")} == {"ca.key", "audit-signing.key"} | {c.key.name for c in creds.values()}
    assert [p.name for p in (d / "ca").glob("*.key")] == ["ca.key"]
    assert sorted(p.name for p in (d / "coordinator").glob("*.key")) == ["audit-signing.key", "coordinator.key"]
    for party, c in creds.items():
        assert [p.name for p in c.key.parent.glob("*.key") if p.name != "audit-signing.key"] == [f"{party}.key"]


def test_init_pki_refuses_to_overwrite(pki):
    d, creds = pki
    before = (d / "ca" / "ca.pem").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a fedlink PKI"):
        init_pki(d, ["population"])
    assert (d / "ca" / "ca.pem").read_bytes() == before


def test_init_pki_overwrite_replaces_ca(tmp_path):
    first = init_pki(tmp_path, ["population"])["coordinator"].ca.read_bytes()
    creds = init_pki(tmp_path, ["population"], overwrite=True)
    assert creds["coordinator"].ca.read_bytes() != first
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600


def test_credentials_for_names_missing_file(pki, tmp_path):
    d, _ = pki
    with pytest.raises(FileNotFoundError, match="nobody.pem"):
        credentials_for(d, "nobody")
    (tmp_path / "x.pem").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="x.key"):
        credentials_for(tmp_path, "x")


def test_bad_names_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        init_pki(tmp_path, ["../etc"])
    with pytest.raises(ValueError):
        init_pki(tmp_path, ["population"], operators=("a:b",))
    with pytest.raises(ValueError, match="duplicate"):
        init_pki(tmp_path, ["population"], operators=("x",), officers=("x",))
    assert not (tmp_path / "ca.pem").exists()


# --------------------------------------------------------------------------
# identity_from_certificate on hand-made certificates


def _self_signed(uris: list[str] | None, cn: str = "someone") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if uris is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("example.org")] + [x509.UniformResourceIdentifier(u) for u in uris]
            ),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_identity_requires_fedlink_uri():
    with pytest.raises(IdentityError, match="no urn:fedlink"):
        identity_from_certificate(_self_signed(None))
    with pytest.raises(IdentityError, match="no urn:fedlink"):
        identity_from_certificate(_self_signed(["https://example.org/agent/population"]))


def test_identity_rejects_ambiguous_or_malformed_uris():
    with pytest.raises(IdentityError, match="exactly one"):
        identity_from_certificate(_self_signed(["urn:fedlink:agent:a", "urn:fedlink:agent:b"]))
    with pytest.raises(IdentityError, match="unknown role"):
        identity_from_certificate(_self_signed(["urn:fedlink:admin:root"]))
    with pytest.raises(IdentityError, match="without a department"):
        identity_from_certificate(_self_signed(["urn:fedlink:agent"]))
    with pytest.raises(IdentityError, match="without a department"):
        identity_from_certificate(_self_signed(["urn:fedlink:agent:"]))
    with pytest.raises(IdentityError):
        identity_from_certificate(_self_signed(["urn:fedlink:agent:a:b"]))
    with pytest.raises(IdentityError, match="not a valid PEM"):
        identity_from_certificate(b"garbage")
    assert issubclass(IdentityError, ValueError)


def test_identity_from_hand_made_certificate():
    ident = identity_from_certificate(_self_signed(["spiffe://x/y", "urn:fedlink:operator:ops-1"], cn="Ops One"))
    assert ident == Identity(role="operator", name="ops-1", department="")
    assert str(ident) == "operator:ops-1"
    ident = identity_from_certificate(_self_signed(["urn:fedlink:agent:population"], cn="agent-population"))
    assert str(ident) == "agent:population" and ident.name == "agent-population"


def test_identity_uri():
    assert identity_uri("agent", "population") == "urn:fedlink:agent:population"
    assert identity_uri("operator", "ops-1") == "urn:fedlink:operator:ops-1"
    with pytest.raises(IdentityError):
        identity_uri("root", "x")
    with pytest.raises(IdentityError):
        identity_uri("agent", "a:b")
    with pytest.raises(IdentityError):
        Identity(role="agent", name="agent-x", department="")
    with pytest.raises(IdentityError):
        Identity(role="operator", name="ops-1", department="tax")
