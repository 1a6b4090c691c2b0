"""Test-only: the console's app on a plain-HTTP loopback listener that hands
every request a fixed identity, so headless Chromium can drive the pages
without a client certificate dialog. It lives in tests/ and nowhere in the
product: `fedlink console serve` has no option for plain HTTP or a fixed
identity, and the product code takes the identity only from the TLS handshake
(server/console/auth.py). The certificate checks themselves are tested
against the real `fedlink console serve` (tests/test_console.py)."""
from __future__ import annotations

import threading
import time

import uvicorn

from fedlink.identity import Identity
from server.console.app import create_app
from server.console.auth import IDENTITY_KEY


class PlainConsole:
    def __init__(self, source, who: Identity, port: int):
        app = create_app(source, https=False)

        async def as_fixed_identity(scope, receive, send):
            scope[IDENTITY_KEY] = who
            await app(scope, receive, send)

        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(as_fixed_identity, host="127.0.0.1", port=port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("the test console did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
