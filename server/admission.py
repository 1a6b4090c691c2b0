"""Who may make a call, and how much of the coordinator one caller may hold:
the caller's identity (its verified, unrevoked certificate; a self-named
header only when the coordinator runs plaintext on loopback), and the watch
on open streams that closes one whose client stopped sending or reading,
and the turns in which upload batches from many agents are written."""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
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


class WriteQueue:
    """Upload batches from many agents, written in turns and committed together.

    Each uploader (one department's upload into one project: one agent) has its
    own queue. One writer thread makes a round of the batches waiting: the
    oldest of each uploader in turn, then the next of each, until every queue
    is empty or the round holds `most_per_round`. So a batch waits behind at
    most one batch per other uploader ahead of it, never behind another
    agent's whole upload, however many streams or batches that agent has; the
    agents of one department in four projects are four uploaders, not one. A round's batches share one transaction
    (one commit, one fsync: group commit), each inside a savepoint, so a
    refused batch (a repeated reference) is rolled back alone and the others
    still land. A batch's future is answered only once its round has committed."""

    def __init__(self, store, most_per_round: int = 64):
        self.store, self.most_per_round = store, most_per_round
        self._queues: dict[str, deque[tuple[object, Future]]] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, uploader: str, work) -> Future:
        """`work(conn)`, queued for the writer's next round: the future of its result, or of what it raised.
        Once this returns, the batch is counted in `waiting()` until the writer takes it."""
        future: Future = Future()
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="upload-writer", daemon=True)
                self._thread.start()
            self._queues.setdefault(uploader, deque()).append((work, future))
            self._wake.notify()
        return future

    def waiting(self) -> dict[str, int]:
        """Per uploader, the batches submitted that the writer has not yet taken into a round."""
        with self._wake:
            return {d: len(queue) for d, queue in self._queues.items() if queue}

    def _next_round(self) -> list[tuple[object, Future]]:
        with self._wake:
            while not any(self._queues.values()):
                self._wake.wait()
            taken, last = [], None
            while len(taken) < self.most_per_round and any(self._queues.values()):
                for uploader, queue in self._queues.items():  # one of each uploader's, in turn
                    if queue and len(taken) < self.most_per_round:
                        taken.append(queue.popleft())
                        last = uploader
            # The next round starts after the last uploader served: a full round's remainder goes round the
            # uploaders instead of always to the first ones.
            order = list(self._queues)
            for uploader in order[:order.index(last) + 1]:
                self._queues[uploader] = self._queues.pop(uploader)
            for uploader in [u for u, queue in self._queues.items() if not queue]:
                del self._queues[uploader]  # its next batch takes the last turn of its round
            return taken

    def _run(self) -> None:
        while True:
            self._write(self._next_round())

    def _write(self, taken: list[tuple[object, Future]]) -> None:
        outcomes: list[tuple[object, BaseException | None]] = []
        try:
            with self.store.write() as conn:
                for work, _ in taken:
                    try:
                        with conn.begin_nested():
                            outcomes.append((work(conn), None))
                    except Exception as e:  # this batch only: its savepoint is rolled back
                        outcomes.append((None, e))
        except Exception as e:  # the commit (or the transaction) failed: no batch of the round is stored
            outcomes = [(None, error or e) for _, error in outcomes] + [(None, e)] * (len(taken) - len(outcomes))
        for (_, future), (result, error) in zip(taken, outcomes):
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
