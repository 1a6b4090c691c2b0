"""What every client of the coordinator shares (agent, operator, officer): the
channel (mutual TLS from a PKI folder or cert/key/ca paths; plaintext only
with a development identity on loopback), the call metadata and timeout, and
retrying with backoff where a client wants it."""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Callable, TypeVar

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict

from fedlink.pki import Credentials, channel_credentials, credentials_for
from fedlink.v1 import coordinator_pb2_grpc as pb_grpc

log = logging.getLogger("fedlink.client")

T = TypeVar("T")

# The coordinator accepts messages up to 16 MiB by default (`--max-message-bytes`).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# RESOURCE_EXHAUSTED is retried only when the coordinator says when (its rate limit):
# a message or upload over a size limit stays over it.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class CoordinatorUnavailable(RuntimeError):
    """The coordinator stayed unreachable through every retry."""


class CoordinatorCertificateError(RuntimeError):
    """The coordinator answered, but its certificate is not the one this client expects:
    it does not name the address connected to, or no CA of ours signed it. Never retried."""


def certificate_problem(error: grpc.RpcError, address: str, server_name: str) -> str | None:
    """What is wrong with the coordinator's certificate, when that is why a call failed."""
    details = error.details() or ""
    name = server_name or address.rsplit(":", 1)[0].strip("[]")
    if "Hostname Verification Check failed" in details or "No match found for server name" in details:
        return (f"the coordinator at {address} presented a certificate that does not name {name!r}: connect by a "
                "name its certificate carries, or have the CA operator sign a coordinator certificate with "
                f"--dns/--ip {name} (fedlink pki request --role coordinator)")
    if "CERTIFICATE_VERIFY_FAILED" in details or "certificate verify failed" in details.lower():
        return (f"the coordinator at {address} presented a certificate that the CA in this client's bundle did "
                "not sign: check the address, and that ca.pem is the project's CA")
    return None


def retry_after_s(error: grpc.RpcError) -> float | None:
    """The wait a rate-limited call was told (trailing metadata retry-after-ms), if any."""
    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    try:
        for key, value in error.trailing_metadata() or ():
            if key == "retry-after-ms":
                return int(value) / 1000.0
    except (AttributeError, ValueError):
        return None
    return None


class CoordinatorClient:
    """A channel and stub to the coordinator. Without credentials the channel is
    plaintext and every call names `dev_identity` (the coordinator accepts that
    only when it runs insecure on loopback: it has no certificate to read)."""

    party = ""  # the certificate name in a PKI folder a client of this kind uses by default

    def __init__(self, address: str, credentials: Credentials | None, *, dev_identity: str = "",
                 retries: int = 0, server_name: str = "", health_url: str = ""):
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        if server_name:  # the name to check the coordinator's certificate for, when not the address's own
            options.append(("grpc.ssl_target_name_override", server_name))
        self.address, self.server_name = address, server_name
        self.health_url = health_url  # the coordinator's plain /healthz: its clock, when it refuses our certificate
        self.retries = retries
        self.credentials = credentials
        self._diagnosed: str | None = None
        if credentials is not None:
            self.channel = grpc.secure_channel(address, channel_credentials(credentials), options=options)
            self.metadata: tuple[tuple[str, str], ...] = ()
        else:
            self.channel = grpc.insecure_channel(address, options=options)
            self.metadata = (("fedlink-dev-identity", dev_identity),)
        self.stub = pb_grpc.CoordinatorStub(self.channel)

    @classmethod
    def connect(cls, address: str, pki: Path | Credentials, party: str = ""):
        """A client with `party`'s certificate from a PKI folder (`fedlink pki init`), or given credentials."""
        return cls(address, pki if isinstance(pki, Credentials) else credentials_for(pki, party or cls.party))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request, timeout: float = 60):
        try:
            return method(request, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as e:
            problem = certificate_problem(e, self.address, self.server_name)
            if problem:
                raise CoordinatorCertificateError(problem) from e
            if e.code() == grpc.StatusCode.UNAVAILABLE and self._certificate_times(e):
                # A certificate outside its validity by one side's clock: retrying cannot help, naming it does.
                raise CoordinatorUnavailable(f"the coordinator at {self.address} cannot be reached: "
                                             f"{self._diagnosed}") from e
            raise

    def _retrying(self, resumes: str, fn: Callable[[], T]) -> T:
        """Call fn, retrying with exponential backoff (and jitter) while the
        coordinator is unreachable or asks to be called later (rate limit);
        after `retries` attempts, a CoordinatorUnavailable that says what to do."""
        attempt = 0
        while True:
            try:
                return fn()
            except grpc.RpcError as e:
                pushback = retry_after_s(e)
                if not (e.code() in RETRYABLE or pushback is not None):
                    raise
                why = self.diagnose(e)
                if attempt >= self.retries:
                    raise CoordinatorUnavailable(
                        f"the coordinator at {self.address} is still unavailable after {attempt} "
                        f"retries ({why}); nothing is counted until the coordinator "
                        "commits it: run the same command again to resume") from e
                attempt += 1
                wait = max(pushback or 0.0, min(30.0, 0.5 * 2 ** attempt) * random.uniform(0.8, 1.2))
                log.warning("coordinator unavailable (%s); retrying in %.1f s (attempt %d of %d)%s",
                            why[:300], wait, attempt, self.retries, f", {resumes}" if resumes else "")
                time.sleep(wait)

    def _certificate_times(self, error: grpc.RpcError) -> bool:
        """Whether a failed connection is explained by a certificate's validity (diagnose)."""
        self.diagnose(error)
        return bool(self._diagnosed)

    def diagnose(self, error: grpc.RpcError) -> str:
        """What a failed call says, and, when the connection itself failed, a
        certificate that this machine's clock finds not yet valid or expired
        (ours, the CA, or the coordinator's), which gRPC reports only as
        "unavailable". A store outage the coordinator reported is its own reason."""
        said = f"{error.code().name}: {(error.details() or '')[:300]}"
        if error.code() != grpc.StatusCode.UNAVAILABLE or self.credentials is None or "database" in said:
            return said
        if self._diagnosed is None:
            from fedlink.pki.validity import credential_problems, peer_problem, refusal_problem

            problems = credential_problems(self.credentials) + [p for p in [peer_problem(self.address)] if p]
            if not problems:  # all valid here: does the coordinator refuse our certificate (its clock)?
                problems = [p for p in [refusal_problem(self.address, self.credentials, self.health_url)] if p]
            self._diagnosed = "; ".join(problems)
        return f"{said}; {self._diagnosed}" if self._diagnosed else said

_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def message_dict(message) -> dict:
    """A message as JSON-ready data, every field present, 64-bit counts as numbers
    (protobuf's JSON mapping writes them as strings)."""
    return _numbers(message.DESCRIPTOR, MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True))


def _numbers(descriptor, data: dict) -> dict:
    for f in descriptor.fields:
        if f.name not in data or (f.message_type is not None and f.message_type.GetOptions().map_entry):
            continue
        value = data[f.name]
        if f.message_type is not None:
            data[f.name] = ([_numbers(f.message_type, v) for v in value] if isinstance(value, list)
                            else _numbers(f.message_type, value))
        elif f.type in _INT64:
            data[f.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
    return data
