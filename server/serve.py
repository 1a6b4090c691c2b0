"""Start the coordinator: gRPC with mutual TLS, health checking (gRPC, and
plain HTTP for load balancers), reflection, Prometheus metrics, and a graceful
stop that finishes the batches in flight."""
from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedlink.audit import default_origin
from fedlink.files import keep_private
from fedlink.pki import AUDIT_KEY_FILE, CRL_FILE, Credentials, RevocationList, server_credentials
from fedlink.v1 import coordinator_pb2 as pb
from server.admission import StreamWatch
from server.limits import DEFAULT_RUN_STALL_S
from server.audit import AuditLog
from server.domain.coordinator import Coordinator
from server.domain.retention import DEFAULT_KEEP_RUNS
from server.engine import engine_from_url
from server.limits import Limits
from server.ownership import LEASE_TTL_S, Ownership
from server.probes import HealthEndpoint, enable_reflection, serve_metrics
from server.servicer import CoordinatorServicer, register
from server.store import Store, safe_url

log = logging.getLogger("fedlink.coordinator")
SERVICE = pb.DESCRIPTOR.services_by_name["Coordinator"].full_name


@dataclass
class Running:
    server: grpc.Server
    port: int
    coordinator: Coordinator
    health: health.HealthServicer
    watch: StreamWatch
    health_port: int | None = None  # the plain HTTP /healthz, when asked for
    closers: list[Callable[[], None]] = field(default_factory=list)

    def stop(self, grace: float = 10.0) -> None:
        """Refuse new calls, let calls in flight (an accepted batch) finish, then close."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.watch.stop()
        for close in self.closers:
            close()
        self.coordinator.close()
        self.coordinator.store.engine.dispose()  # return the database connections

    def problem(self) -> str:
        """Why the coordinator is not serving, or "": for the HTTP health check."""
        answer = self.health.Check(health_pb2.HealthCheckRequest(service=""), None)
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            return "shutting down"
        try:
            with self.coordinator.store.read() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as e:  # any failure of the database is the answer, not a crash of the probe
            return f"database: {type(e).__name__}"
        return ""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def own_folder_only(credentials: Credentials) -> None:
    """The coordinator's folder holds its own two keys (TLS, audit) and public files: a CA key
    or another party's key there would let the coordinator's side act as anyone."""
    folder = credentials.cert.parent
    foreign = sorted(p.name for p in folder.glob("*.key") if p.name not in (credentials.key.name, AUDIT_KEY_FILE))
    if foreign:
        raise ValueError(f"{folder} holds private keys that are not the coordinator's: {', '.join(foreign)}. "
                         "Keep the CA key with the CA operator and each party's key with that party "
                         "(fedlink pki request / sign); the coordinator's folder holds only its own TLS key, "
                         "its audit signing key, its certificate, the CA certificate and the CRL")


def start(address: str, database: str | Path, *, credentials: Credentials | None = None, insecure: bool = False,
          engine: str | None = None, max_workers: int = 64, metrics_port: int | None = None,
          interceptors: tuple[grpc.ServerInterceptor, ...] = (), audit_key: Path | None = None,
          limits: Limits | None = None, schedule_poll: float = 30.0,
          health_address: str | None = None, crl: Path | None = None, keep_runs: int = DEFAULT_KEEP_RUNS,
          lease_seconds: float = LEASE_TTL_S, log_origin: str | None = None,
          witnesses: Path | None = None, run_stall_seconds: float = DEFAULT_RUN_STALL_S,
          full_runs: bool = False) -> Running:
    """Start serving. The audit log's Ed25519 signing key is `audit_key`, else
    `audit-signing.key` in the PKI folder the coordinator's certificate is in,
    else one beside the database; it is created on first start. Its
    checkpoints name `log_origin` (default: fedlink.audit.default_origin). The project's
    witnesses file is `witnesses`, else `witnesses.toml` beside the audit key
    (read again whenever it changes). Raises LogTampered when the stored log is not the one
    last signed. Callers are checked against the CRL `crl` (default `crl.pem` beside the certificate),
    re-read whenever it changes. `health_address` (host:port) serves plain HTTP
    GET /healthz, with no certificate, for a load balancer; `metrics_port`
    serves /metrics on the host of `address`. `full_runs`: every run re-links
    everything (server/pipeline/increments.py)."""
    host, _, _ = address.rpartition(":")
    if credentials is not None and insecure:
        # With TLS on, the caller's identity is its certificate's, never a header it sends.
        raise ValueError("--insecure cannot be combined with --pki or --cert/--key/--ca: it would let callers "
                         "name themselves over mutual TLS. Drop --insecure to serve with mutual TLS")
    if credentials is None:
        if not insecure:
            raise ValueError("mutual TLS needs --pki DIR (or --cert/--key/--ca); plaintext needs --insecure")
        if not is_loopback(host):
            raise ValueError(f"--insecure is allowed on a loopback address only, not {host!r}")
        log.warning("INSECURE: serving plaintext gRPC on %s; callers name themselves. Development only.", address)
        revocations = None
    else:
        own_folder_only(credentials)
        revocations = RevocationList(crl or credentials.cert.parent / CRL_FILE, credentials.ca)
    if audit_key is None:
        if credentials is None and "://" in str(database):
            raise ValueError("with a database URL and no PKI folder, name the audit signing key (--audit-key)")
        audit_key = (credentials.cert.parent if credentials else Path(str(database)).parent) / AUDIT_KEY_FILE
    audit_key = Path(audit_key)
    witnesses = Path(witnesses) if witnesses else audit_key.parent / "witnesses.toml"
    if not witnesses.exists():
        log.warning("no witnesses file %s yet: no cosignature is kept, so agents find no witness quorum, until "
                    "the CA operator writes it (fedlink audit witnesses); it is read when it changes", witnesses)
    keep_private()  # the database, its -wal/-shm and the audit key: the coordinator's alone
    limits = limits or Limits()
    match_engine = engine_from_url(engine)  # a bad --engine fails before anything is opened
    if credentials is not None:
        warn_about_certificate_times(credentials)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=[("grpc.so_reuseport", 0),  # a port in use is an error, not a second server sharing it
                 # Above the coordinator's own limit, so that a larger message is refused (and audited) by it.
                 ("grpc.max_receive_message_length", limits.transport_message_bytes),
                 # A lower receive limit does not shrink what the coordinator may send (reports, flag streams).
                 ("grpc.max_send_message_length", max(limits.max_message_bytes, Limits.max_message_bytes))],
    )
    # The port first: one in use stops the start before the database is touched.
    try:
        if credentials is not None:
            port = server.add_secure_port(address, server_credentials(credentials))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind"
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address}: the port is in use (another coordinator?) or the address is "
                      "not this machine's")
    if keep_runs < 0:
        raise ValueError(f"--keep-runs {keep_runs}: the number of runs whose uploads are kept, 0 to keep all")
    if not run_stall_seconds > 0:
        raise ValueError(f"--run-stall-seconds {run_stall_seconds}: the seconds without progress after which a run "
                         "is failed must be more than 0")
    store = Store(database)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)

    def alarm(reason: str) -> None:  # the health check says so too: a load balancer takes it out
        for name in ("", SERVICE):
            health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    try:
        # SQLite: refused while another coordinator holds the database; PostgreSQL: a lease among others.
        ownership = Ownership(store, database, address, lease_seconds)
        audit_log = AuditLog(store, audit_key, log_origin or default_origin(credentials.cert if credentials else None),
                             witnesses, alarm)
    except Exception:
        server.stop(0)
        store.engine.dispose()
        raise
    coordinator = Coordinator(store, audit_log, ownership, match_engine, limits, keep_runs, run_stall_seconds,
                              incremental=not full_runs)
    for run_id in coordinator.runs.recover_interrupted():
        log.warning("run %s was interrupted by the last stop; marked failed: start it again", run_id)
    # Requests that do not parse are refused with INVALID_ARGUMENT, not gRPC's INTERNAL.
    servicer = CoordinatorServicer(coordinator, insecure=credentials is None, limits=limits, revocations=revocations)
    register(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((SERVICE, health.SERVICE_NAME), server)
    running = Running(server, port, coordinator, health_servicer, servicer.watch)
    try:
        _start_probes(running, host.strip("[]") or "127.0.0.1", metrics_port, health_address)
    except OSError:
        server.stop(0)
        coordinator.close()
        store.engine.dispose()
        raise
    server.start()
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("coordinator listening on %s (port %d, database %s)%s", address, port, safe_url(database),
             f", health check http://{health_address.rpartition(':')[0]}:{running.health_port}/healthz"
             if health_address else "", extra={"event": "serving", "port": port, "health_port": running.health_port})
    coordinator.start_scheduler(schedule_poll)
    servicer.watch.start()
    return running


def _start_probes(running: Running, metrics_host: str, metrics_port: int | None, health_address: str | None) -> None:
    if metrics_port is not None:
        from server.metrics import registry

        running.closers.append(serve_metrics(metrics_host, metrics_port, registry(running.coordinator.store)))
    if health_address is not None:
        host, _, port = health_address.rpartition(":")
        try:
            endpoint = HealthEndpoint(host.strip("[]") or "0.0.0.0", int(port), running.problem)
        except OSError as e:
            raise OSError(f"--health-port: cannot listen on {health_address}: {e.strerror}") from None
        running.health_port = endpoint.port
        running.closers.append(endpoint.close)


def warn_about_certificate_times(credentials: Credentials) -> None:
    """A certificate this machine's clock finds not yet valid or expired fails every handshake: said loudly."""
    from fedlink.pki.validity import credential_problems

    for problem in credential_problems(credentials):
        log.error("%s; every connection fails until it is fixed", problem)


def serve_forever(running: Running, grace: float = 10.0) -> None:
    """Block until SIGINT/SIGTERM, then stop gracefully."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down: finishing calls in flight (up to %.0f s)", grace)
    running.stop(grace)
    log.info("stopped")


def wait_serving(address: str, credentials: Credentials, limit: float, alive=lambda: True) -> bool:
    """Poll a coordinator's health service until it answers SERVING (True), it stops
    being `alive()` or `limit` seconds pass (False): how a process that started one
    knows it may call it."""
    import time

    from fedlink.pki import channel_credentials

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and alive():
        channel = grpc.secure_channel(address, channel_credentials(credentials))
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return True
        except grpc.RpcError:
            time.sleep(0.1)
        finally:
            channel.close()
    return False
