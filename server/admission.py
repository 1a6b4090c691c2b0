"""Who may make a call, and how much of the coordinator one caller may hold:
the caller's identity (its verified, unrevoked certificate; a self-named
header only when the coordinator runs plaintext on loopback), and the watch
on open streams that closes one whose client stopped sending or reading."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from cryptography import x509

from fedlink.identity import Identity, IdentityError, identity_from_grpc_context
from fedlink.pki import RevocationList

# Only for --insecure on loopback: with no certificate, the caller names itself.
DEV_IDENTITY_HEADER = "fedlink-dev-identity"
_PEER_CERT = "x509_pem_cert"


def dev_identity(context) -> Identity:
    claimed = dict(context.invocation_metadata()).get(DEV_IDENTITY_HEADER, "")
    role, _, rest = claimed.partition(":")
    if role == "agent":
        return Identity("agent", f"agent-{rest}", rest)
    if role in ("operator", "officer", "console"):
        return Identity(role, rest or role, "")
    raise IdentityError(f"insecure mode: send metadata {DEV_IDENTITY_HEADER}=role:name")


def certificate_identity(context, revocations: RevocationList | None) -> Identity:
    """The identity in the peer's verified certificate, refused when the CRL lists it."""
    who = identity_from_grpc_context(context)
    certs = context.auth_context()[_PEER_CERT]
    if revocations is not None:
        serial = x509.load_pem_x509_certificate(certs[0]).serial_number
        revoked = revocations.revoked(serial)
        if revoked is not None:
            raise IdentityError(f"the certificate of {who} (serial {serial:x}) was revoked on "
                                f"{revoked.since:%Y-%m-%d %H:%M} UTC; ask the CA operator for a new one")
    return who


@dataclass
class _Watched:
    cancel: object  # (code, details) -> None
    waiting_since: float | None = None


@dataclass
class StreamWatch:
    """Streams open now, and since when each waits on its client (to send the
    next message, or to read the last one). One thread closes those that wait
    longer than `idle_s`, with RESOURCE_EXHAUSTED and a message saying why;
    `on_close` records it."""

    idle_s: float
    on_close: object  # (who, method) -> None
    _streams: dict[int, tuple[str, str, _Watched]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def watching(self, who: str, method: str, context):
        watched = _Watched(lambda code, details: _cancel(context, code, details))
        with self._lock:
            self._streams[id(watched)] = (who, method, watched)
        try:
            yield watched
        finally:
            with self._lock:
                self._streams.pop(id(watched), None)

    @staticmethod
    @contextmanager
    def waiting(watched: _Watched):
        watched.waiting_since = time.monotonic()
        try:
            yield
        finally:
            watched.waiting_since = None

    def sweep(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [(k, w) for k, w in self._streams.items()
                    if w[2].waiting_since is not None and now - w[2].waiting_since > self.idle_s]
            for key, _ in idle:
                del self._streams[key]
        for _, (who, method, watched) in idle:
            self.on_close(who, method)  # audited before the client can hear of it
            watched.cancel("resource_exhausted",
                           f"{method} stream closed: it waited {self.idle_s:g} s on its client (the coordinator's "
                           "--stream-idle-seconds); open a new one when there is something to send")

    def start(self) -> StreamWatch:
        def run():
            while not self._stop.wait(min(1.0, self.idle_s / 4)):
                self.sweep()
        threading.Thread(target=run, name="stream-watch", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


def _cancel(context, code: str, details: str) -> None:
    """End a call from outside its handler with a status the client sees (gRPC's
    public `cancel()` would say only CANCELLED)."""
    from grpc._cython import cygrpc

    try:
        context._rpc_event.call.cancel(getattr(cygrpc.StatusCode, code), details)
    except AttributeError:  # another gRPC's internals: a plain cancel still frees the thread
        context.cancel()
