"""Run an app on uvicorn: in the foreground (the CLI) or in a background thread (tests, benchmarks).

The HTTP protocol is protocol.py's: uvicorn's h11 protocol plus header and
body timeouts and a connection cap, taken from the `ServeSettings` passed (by
default the ones `create_app` stored on the app).

Graceful shutdown is uvicorn's: on SIGINT/SIGTERM (or `stop()`) it stops
accepting connections, waits up to `graceful_s` for requests in flight, then
runs the app's lifespan shutdown, which drains the batcher.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .config import ServeSettings
from .protocol import guarded_protocol

LOOPBACK = "127.0.0.1"


def uvicorn_server(
    app,
    *,
    host: str = LOOPBACK,
    port: int = 8000,
    graceful_s: float = 30.0,
    log_level: str = "info",
    settings: ServeSettings | None = None,
):
    import uvicorn

    settings = settings or getattr(getattr(app, "state", None), "settings", None) or ServeSettings()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=graceful_s,
        lifespan="on",
        http=guarded_protocol(settings),
    )
    return uvicorn.Server(config)


@dataclass
class RunningServer:
    server: object  # uvicorn.Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful: requests in flight finish first."""
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_in_thread(
    app,
    *,
    port: int = 0,
    graceful_s: float = 30.0,
    startup_timeout: float = 60.0,
    settings: ServeSettings | None = None,
) -> RunningServer:
    """Serve `app` on 127.0.0.1 (port 0 = any free port) from a daemon thread; return once it accepts."""
    server = uvicorn_server(
        app, host=LOOPBACK, port=port, graceful_s=graceful_s, log_level="warning", settings=settings
    )
    # uvicorn only installs signal handlers on the main thread, so this one leaves them alone.
    thread = threading.Thread(target=server.run, name="softprompt-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start (see the log above)")
        time.sleep(0.01)
    return RunningServer(server, thread)
