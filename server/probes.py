"""What the coordinator offers those who run it, besides its service: a plain
HTTP health check a load balancer reaches without a project certificate, the
Prometheus endpoint, and gRPC server reflection in both its versions.

grpcio-reflection serves `grpc.reflection.v1alpha.ServerReflection` only; v1
(`grpc.reflection.v1.ServerReflection`, what current grpcurl and Postman ask
first) is the same protocol under a new package, field for field, so its
method is the v1alpha servicer behind v1's name."""
from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import grpc
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as alpha

log = logging.getLogger("fedlink.coordinator")

REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def enable_reflection(service_names: tuple[str, ...], server: grpc.Server) -> None:
    """Reflection v1 and v1alpha over the same servicer; each lists both."""
    names = (*service_names, reflection.SERVICE_NAME, REFLECTION_V1)
    servicer = reflection.ReflectionServicer(names)
    reflection.enable_server_reflection(names, server)
    method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo, request_deserializer=alpha.ServerReflectionRequest.FromString,
        response_serializer=alpha.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        REFLECTION_V1, {"ServerReflectionInfo": method}),))


class HealthEndpoint:
    """`GET /healthz` on plain HTTP: 200 while the coordinator serves and its
    database answers, 503 (with the reason) otherwise. It says nothing else:
    no project, no count, no version."""

    def __init__(self, host: str, port: int, ready: Callable[[], str]):
        """`ready()` is "" when healthy, else why not."""
        handler = type("Handler", (_HealthHandler,), {"ready": staticmethod(ready)})
        self.http = ThreadingHTTPServer((host, port), handler)
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        self._thread = threading.Thread(target=self.http.serve_forever, name="healthz", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


class _HealthHandler(BaseHTTPRequestHandler):
    ready: Callable[[], str]

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        if self.path.split("?")[0] != "/healthz":
            code, text = 404, "not found: the health check is GET /healthz\n"
        else:
            problem = self.ready()
            code, text = (503, f"NOT_SERVING: {problem}\n") if problem else (200, "SERVING\n")
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # a probe every few seconds is not news
        log.debug("healthz: " + format, *args)


def serve_metrics(host: str, port: int, registry) -> Callable[[], None]:
    """Prometheus text format at /metrics; returns what stops it."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host, registry=registry)
    return lambda: (server.shutdown(), server.server_close())
