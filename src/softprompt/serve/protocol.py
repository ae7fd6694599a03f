"""The HTTP protocol uvicorn runs, with the limits uvicorn lacks: header and body timeouts, a connection cap.

uvicorn's `timeout_keep_alive` only covers the idle time between requests and
is reset by every byte received, and an ASGI middleware only runs once the
headers are complete, so a client that opens connections and sends a request
head slowly ("slowloris") holds each connection forever. Here, per connection:

- the request line and headers must arrive within `header_timeout_s` of the
  moment the connection can take a request (opened, or the previous response
  sent); trickling bytes does not extend it;
- the body must arrive within `body_timeout_s` of its headers;
- past `max_connections` open connections, a new one is answered 503 and closed.

Both timeouts answer 408 and close (silently when the client had sent
nothing since the connection became ready: an idle keep-alive connection
must not receive a response it never asked for). A
subclass of uvicorn's h11 protocol: it follows h11's view of the client
(`their_state`) after each read, and changes none of uvicorn's own handling.
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import ServeSettings


def _raw_response(status: str, message: str) -> bytes:
    """A whole HTTP response, for answering below the app (the error body has the app's shape)."""
    error = {"message": message, "type": "server_error", "code": int(status[:3]), "param": None}
    body = json.dumps({"error": error})
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"connection: close\r\n\r\n{body}"
    ).encode()


TOO_MANY = _raw_response("503 Service Unavailable", "too many open connections (--max-connections); retry shortly")
TOO_SLOW = _raw_response("408 Request Timeout", "the request did not arrive in time (--header-timeout/--body-timeout)")


def guarded_protocol(settings: ServeSettings) -> type[H11Protocol]:
    """uvicorn's h11 protocol class with `settings`' timeouts and connection cap."""

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _phase: str | None = None  # "head", "body", or None while no request is being received
        _heard = False  # bytes arrived in this phase

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > settings.max_connections:
                transport.write(TOO_MANY)
                transport.close()
                return
            self._watch()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            self._heard = True
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()  # ready for the next request: its head is now due

        def _watch(self) -> None:
            """Arm the deadline of the phase h11 says the client is in, when that phase begins."""
            state = self.conn.their_state
            phase = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
            if phase == self._phase:
                return
            self._disarm()
            self._phase, self._heard = phase, False
            if phase is not None and not self.transport.is_closing():
                timeout = settings.header_timeout_s if phase == "head" else settings.body_timeout_s
                self._deadline = self.loop.call_later(timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            # A 408 is owed to a client that began a request head, or whose body we wait for unanswered.
            started = self.cycle is not None and self.cycle.response_started
            if self._heard if self._phase == "head" else not started:
                self.transport.write(TOO_SLOW)
            self.transport.close()  # connection_lost tells the app, if one is waiting for the body

    return GuardedH11Protocol
