"""The routes an app serves, found by walking it, so tests that must cover every route cover
the ones added later too. (`app.routes` holds each included router as one entry;
`iter_route_contexts` walks the routes inside.)"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import WebSocketRoute

# Methods Starlette adds on its own beside the declared ones.
IMPLIED_METHODS = frozenset({"HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class ServedRoute:
    """One method of one route: "WS" for a websocket, "MOUNT" for anything mounted."""

    method: str
    path: str
    in_schema: bool


def served_routes(app: FastAPI) -> list[ServedRoute]:
    found: list[ServedRoute] = []
    for route in iter_route_contexts(app.routes):
        original = route.original_route
        in_schema = bool(getattr(original, "include_in_schema", False))
        if isinstance(original, WebSocketRoute):
            methods = {"WS"}
        else:
            methods = set(route.methods or {"MOUNT"}) - IMPLIED_METHODS
        found += [ServedRoute(m, route.path or "", in_schema) for m in sorted(methods)]
    return found


def schema_operation_count(app: FastAPI) -> int:
    """How many operations the OpenAPI document should list: every HTTP route in it."""
    return sum(1 for r in served_routes(app) if r.in_schema and r.method not in ("WS", "MOUNT"))
