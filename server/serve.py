"""Start the coordinator: gRPC with mutual TLS, health checking, reflection,
Prometheus metrics, and a graceful stop that finishes the batches in flight."""
from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fedlink.audit import default_origin
from fedlink.pki import Credentials, server_credentials
from fedlink.v1 import coordinator_pb2 as pb
from server.audit import AuditLog
from server.domain.coordinator import Coordinator
from server.engine import engine_from_url
from server.limits import Limits
from server.servicer import CoordinatorServicer, register
from server.store import Store

log = logging.getLogger("fedlink.coordinator")
SERVICE = pb.DESCRIPTOR.services_by_name["Coordinator"].full_name


@dataclass
class Running:
    server: grpc.Server
    port: int
    coordinator: Coordinator
    health: health.HealthServicer

    def stop(self, grace: float = 10.0) -> None:
        """Refuse new calls, let calls in flight (an accepted batch) finish, then close."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.coordinator.close()
        self.coordinator.store.engine.dispose()  # return the database connections


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def start(address: str, database: str | Path, *, credentials: Credentials | None = None, insecure: bool = False,
          engine: str | None = None, max_workers: int = 16, metrics_port: int | None = None,
          interceptors: tuple[grpc.ServerInterceptor, ...] = (), audit_key: Path | None = None,
          limits: Limits | None = None, schedule_poll: float = 30.0, log_origin: str | None = None,
          witnesses: Path | None = None) -> Running:
    """Start serving. The audit log's Ed25519 signing key is `audit_key`, else
    `audit-signing.key` in the PKI folder the coordinator's certificate is in,
    else one beside the database; it is created on first start. Its
    checkpoints name `log_origin` (default: fedlink.audit.default_origin). The project's
    witnesses file is `witnesses`, else `witnesses.toml` beside the audit key
    (read again whenever it changes). Raises LogTampered when the stored log is not the one
    last signed."""
    host, _, _ = address.rpartition(":")
    if credentials is None:
        if not insecure:
            raise ValueError("mutual TLS needs --pki DIR (or --cert/--key/--ca); plaintext needs --insecure")
        if not is_loopback(host):
            raise ValueError(f"--insecure is allowed on a loopback address only, not {host!r}")
        log.warning("INSECURE: serving plaintext gRPC on %s; callers name themselves. Development only.", address)
    if audit_key is None:
        if credentials is None and "://" in str(database):
            raise ValueError("with a database URL and no PKI folder, name the audit signing key (--audit-key)")
        audit_key = (credentials.cert.parent if credentials else Path(str(database)).parent) / "audit-signing.key"
    audit_key = Path(audit_key)
    witnesses = Path(witnesses) if witnesses else audit_key.parent / "witnesses.toml"
    if not witnesses.exists():
        log.warning("no witnesses file %s yet: no cosignature is kept, so agents find no witness quorum, until "
                    "the CA operator writes it (fedlink audit witnesses); it is read when it changes", witnesses)
    limits = limits or Limits()
    match_engine = engine_from_url(engine)  # a bad --engine fails before anything is opened
    store = Store(database)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)

    def alarm(reason: str) -> None:  # the health check says so too: a load balancer takes it out
        for name in ("", SERVICE):
            health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    try:
        audit_log = AuditLog(store, audit_key, log_origin or default_origin(credentials.cert if credentials else None), witnesses, alarm)
    except Exception:
        store.engine.dispose()
        raise
    coordinator = Coordinator(store, audit_log, match_engine, limits)
    for run_id in coordinator.runs.recover_interrupted():
        log.warning("run %s was interrupted by the last stop; marked failed: start it again", run_id)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=[("grpc.max_receive_message_length", limits.max_message_bytes),
                 # A lower receive limit does not shrink what the coordinator may send (reports, flag streams).
                 ("grpc.max_send_message_length", max(limits.max_message_bytes, Limits.max_message_bytes))],
    )
    # Requests that do not parse are refused with INVALID_ARGUMENT, not gRPC's INTERNAL.
    register(CoordinatorServicer(coordinator, insecure=insecure, limits=limits), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if credentials is not None:
        port = server.add_secure_port(address, server_credentials(credentials))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=host.strip("[]") or "127.0.0.1")
    server.start()
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("coordinator listening on %s (port %d)", address, port)
    coordinator.start_scheduler(schedule_poll)
    return Running(server, port, coordinator, health_servicer)


def serve_forever(running: Running, grace: float = 10.0) -> None:
    """Block until SIGINT/SIGTERM, then stop gracefully."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down: finishing calls in flight (up to %.0f s)", grace)
    running.stop(grace)
    log.info("stopped")
