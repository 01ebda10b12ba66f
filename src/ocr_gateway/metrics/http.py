"""The API's request metrics: a plain ASGI middleware, labelled by route template.

The label is the template the router matched (`/api/v1/jobs/{job_id}`), never the raw path,
so a job id never becomes a series; a path no route matched is `unmatched`. Plain ASGI rather
than Starlette's `BaseHTTPMiddleware`, which would put every response through a stream copy.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ocr_gateway.metrics import registry

UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The matched route's full template. FastAPI keeps an included router's routes without
    its prefix and records the full one in its effective route context; a plain Starlette
    route (a mount, `/docs`) has it as its own path."""
    fastapi_state = scope.get("fastapi")
    context = (
        fastapi_state.get("effective_route_context") if isinstance(fastapi_state, dict) else None
    )
    route = context if context is not None else scope.get("route")
    if route is None:
        return UNMATCHED
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED


class RequestMetrics:
    """Counts each HTTP request and times it to its response's last byte."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            method = str(scope.get("method", ""))
            route = route_template(scope)
            registry.HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            registry.HTTP_DURATION.labels(method=method, route=route).observe(
                time.perf_counter() - started
            )
