"""The publishing rate limit: `PUT /admin/dispatch/rate`, stored in PostgreSQL, read back by
`GET /admin/dispatch`, and held over every dispatcher together."""

from __future__ import annotations

import httpx

from ocr_gateway.components import Components
from ocr_gateway.dispatch import repository as repo


async def test_the_rate_is_set_read_back_and_lifted(
    client: httpx.AsyncClient, services: Components
) -> None:
    try:
        assert (await client.get("/admin/dispatch")).json()["pages_per_second"] is None
        answer = await client.put("/admin/dispatch/rate", json={"pages_per_second": 12.5})
        assert answer.status_code == 200, answer.text
        assert answer.json()["pages_per_second"] == 12.5
        state = (await client.get("/admin/dispatch")).json()
        assert state == {"stopped": state["stopped"], "pages_per_second": 12.5}
        assert isinstance(state["stopped"], bool)
        async with services.sessions() as session:
            assert (await repo.read_dispatch_state(session)).pages_per_second == 12.5

        for body in (
            {"pages_per_second": 0},
            {"pages_per_second": -3},
            {"pages_per_second": "5"},
            {"pages_per_second": 2_000_000},
            {},
            {"rate": 5},
        ):
            refused = await client.put("/admin/dispatch/rate", json=body)
            assert refused.status_code == 422, (body, refused.text)
            assert refused.json()["error"]
        assert (await client.get("/admin/dispatch")).json()["pages_per_second"] == 12.5

        lifted = await client.put("/admin/dispatch/rate", json={"pages_per_second": None})
        assert lifted.status_code == 200
        assert (await client.get("/admin/dispatch")).json()["pages_per_second"] is None
    finally:
        await services.control.set_rate(None)


async def test_the_stop_shows_in_the_dispatch_state(client: httpx.AsyncClient) -> None:
    await client.post("/admin/stop")
    assert (await client.get("/admin/dispatch")).json()["stopped"] is True
