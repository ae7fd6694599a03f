"""ObserveRequests: ASGI middleware recording count, status and latency of every request, per endpoint.

Outermost, so requests refused by the guards (401, 413, 415, 421) are counted
too, under their path when it is an endpoint of the app.
"""

from __future__ import annotations

import time

from .metrics import ServeMetrics


class ObserveRequests:
    def __init__(self, app, *, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        recorded = False

        async def observed_send(message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                self.metrics.observe_request(_endpoint(scope), message["status"], time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            if not recorded:
                self.metrics.observe_request(_endpoint(scope), 500, time.perf_counter() - start)


def _endpoint(scope) -> str:
    """The route's path template ('/v1/prompts/{name}'); before routing, the path if it is a fixed route."""
    route = scope.get("route")
    if getattr(route, "path", None):
        return route.path
    app = scope.get("app")
    fixed = {getattr(r, "path", None) for r in getattr(app, "routes", ())}
    return scope["path"] if scope["path"] in fixed else "unmatched"
