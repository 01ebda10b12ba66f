"""Tenant isolation on every client route, with two tenants, `acme` (A) and `globex` (B).

The routes checked are read from the app itself: every HTTP and websocket route under /api/v1
but the operator's (/admin...) and /health. Each must have an entry in `CHECKS`, which calls it
as B against A's job (and as A, where that leaves A's job as it is, so that a route refusing
everyone cannot pass): B is answered 404 with the very body an unknown job gets, its websocket
is closed as for an unknown job, its list leaves A's job out, and its uploads are its own. A
route added later without an entry fails `test_every_client_route_has_an_isolation_check`.

Both ways of naming a tenant are run: `client_auth=off` with `X-Tenant-Id`, and
`client_auth=api_key` with a key of each tenant, where the operator's key sees both.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws

from ocr_gateway.app import API_PREFIX
from ocr_gateway.components import Components
from ocr_gateway.dispatch import repository as dispatch_repo
from ocr_gateway.messaging.contracts import ResultMessage
from ocr_gateway.results.service import store_result
from tests.support.documents import blank_pdf, sample
from tests.support.gateway import Gateway, isolated_gateway
from tests.support.routes import served_routes
from tests.support.tcp import served
from tests.support.waiting import wait_until

A, B = "acme", "globex"
OPERATOR_KEY = "operator-key-for-the-isolation-tests"
Headers = dict[str, str]


@dataclass
class World:
    """One gateway as both tenants call it: in-process for plain answers, over TCP for
    streams; `a` and `b` are each tenant's headers, `operator` the operator's (key mode)."""

    app: FastAPI
    services: Components
    client: httpx.AsyncClient
    live: httpx.AsyncClient
    a: Headers
    b: Headers
    operator: Headers | None


Check = Callable[[World, str], Awaitable[None]]


def client_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path under /api/v1) of every client route: "WS" for a websocket, "MOUNT" for
    anything mounted there (which this test cannot call, so it fails until someone checks it)."""
    found: set[tuple[str, str]] = set()
    for route in served_routes(app):
        if not route.path.startswith(API_PREFIX + "/"):
            continue  # /docs, /openapi.json, ...
        path = route.path.removeprefix(API_PREFIX)
        if path.startswith("/admin") or path == "/health":
            continue
        found.add((route.method, path))
    return found


# ------------------------------------------------------------ what "hidden" means


def _normalised(response: httpx.Response, job_id: str) -> tuple[int, Any]:
    return response.status_code, json.loads(response.text.replace(job_id, "<job>"))


async def _assert_hidden(
    call: Callable[[str], Awaitable[httpx.Response]], job_id: str, what: str
) -> None:
    """`call` on A's job answers exactly as on a job that does not exist: 404, same body."""
    unknown = str(uuid.uuid4())
    hidden, missing = await call(job_id), await call(unknown)
    assert hidden.status_code == 404, (what, hidden.status_code, hidden.text)
    assert _normalised(hidden, job_id) == _normalised(missing, unknown), what
    assert hidden.json()["error"] == "not_found", what


async def _job_of(world: World, headers: Headers, job_id: str) -> dict[str, Any]:
    response = await world.client.get(f"/jobs/{job_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _listed(world: World, headers: Headers, **params: str) -> set[str]:
    response = await world.client.get("/jobs", headers=headers, params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return {job["job_id"] for job in response.json()["jobs"]}


# ------------------------------------------------------------ the checks, one a route


def _read(path: str, **params: Any) -> Check:
    """A reads its job through `path`; B is told the job does not exist."""

    async def check(world: World, job_id: str) -> None:
        def url(job: str) -> str:
            return path.format(job_id=job, page_number=1)

        owner = await world.client.get(url(job_id), headers=world.a, params=params)
        assert owner.status_code == 200, (path, owner.text)

        async def as_b(job: str) -> httpx.Response:
            return await world.client.get(url(job), headers=world.b, params=params)

        await _assert_hidden(as_b, job_id, f"GET {path} {params}")

    return check


async def _get_job(world: World, job_id: str) -> None:
    await _read("/jobs/{job_id}")(world, job_id)
    await _read("/jobs/{job_id}", wait=0.2)(world, job_id)  # the long poll too


async def _result(world: World, job_id: str) -> None:
    await _read("/jobs/{job_id}/result", partial="true")(world, job_id)

    async def as_b(job: str) -> httpx.Response:
        return await world.client.get(f"/jobs/{job}/result", headers=world.b)

    # A is told its unfinished job's status (409); B must not learn even that.
    owner = await world.client.get(f"/jobs/{job_id}/result", headers=world.a)
    assert owner.status_code == 409
    await _assert_hidden(as_b, job_id, "GET /jobs/{job_id}/result")


async def _list(world: World, job_id: str) -> None:
    assert job_id in await _listed(world, world.a)
    assert job_id not in await _listed(world, world.b)
    assert job_id not in await _listed(world, world.b, status="pending")


async def _events(world: World, job_id: str) -> None:
    async with world.live.stream("GET", f"/jobs/{job_id}/events", headers=world.a) as owner:
        assert owner.status_code == 200
        async for line in owner.aiter_lines():
            if line.startswith("event:"):
                assert line.split(":", 1)[1].strip() == "job.snapshot"
                break

    async def as_b(job: str) -> httpx.Response:
        return await world.live.get(f"/jobs/{job}/events", headers=world.b)

    await _assert_hidden(as_b, job_id, "GET /jobs/{job_id}/events")


async def _ws_close(world: World, job_id: str, headers: Headers) -> tuple[int, str]:
    """The code and reason a websocket on the job is closed with, before any message."""
    async with aconnect_ws(f"/jobs/{job_id}/ws", world.live, headers=headers) as socket:  # type: ignore[var-annotated]
        with pytest.raises(WebSocketDisconnect) as closed:
            message = await socket.receive_text()
            pytest.fail(f"a websocket it may not follow sent {message!r}")
    return closed.value.code, str(closed.value.reason)


async def _websocket(world: World, job_id: str) -> None:
    async with aconnect_ws(f"/jobs/{job_id}/ws", world.live, headers=world.a) as socket:  # type: ignore[var-annotated]
        assert json.loads(await socket.receive_text())["type"] == "job.snapshot"
    unknown = str(uuid.uuid4())
    code, reason = await _ws_close(world, job_id, world.b)
    unknown_code, unknown_reason = await _ws_close(world, unknown, world.b)
    assert code == unknown_code == 1008
    assert reason.replace(job_id, "<job>") == unknown_reason.replace(unknown, "<job>")


def _change(method: str, path: str) -> Check:
    """B's cancel or delete of A's job is told it does not exist, and leaves the job as it was."""

    async def check(world: World, job_id: str) -> None:
        before = await _job_of(world, world.a, job_id)

        async def as_b(job: str) -> httpx.Response:
            return await world.client.request(method, path.format(job_id=job), headers=world.b)

        await _assert_hidden(as_b, job_id, f"{method} {path}")
        after = await _job_of(world, world.a, job_id)
        assert after["status"] == before["status"] != "cancelled"
        assert after["pages"] == before["pages"]

    return check


def _upload(path: str, field: str, name: str, content: Callable[[], bytes]) -> Check:
    """B's upload is B's job: B reads it, A is told it does not exist and does not list it."""

    async def check(world: World, job_id: str) -> None:
        files = {field: (name, content())}
        response = await world.client.post(path, headers=world.b, files=files)
        assert response.status_code == 202, response.text
        body = response.json()
        created = [job["job_id"] for job in body["jobs"]] if "jobs" in body else [body["job_id"]]
        for new in created:
            assert (await _job_of(world, world.b, new))["tenant"] == B

            async def as_a(job: str) -> httpx.Response:
                return await world.client.get(f"/jobs/{job}", headers=world.a)

            await _assert_hidden(as_a, new, f"POST {path}: A reads B's job")
            assert new not in await _listed(world, world.a)
            assert new in await _listed(world, world.b)

    return check


def _task_body() -> dict[str, str]:
    return {"image_data": base64.b64encode(sample("smile.png").read_bytes()).decode()}


async def _task_of(world: World, headers: Headers) -> str:
    response = await world.client.post("/image", headers=headers, json=_task_body())
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


async def _b_cannot_read_task(world: World, task_id: str) -> None:
    async def as_b(job: str) -> httpx.Response:
        return await world.client.get("/image", headers=world.b, params={"task_id": job})

    await _assert_hidden(as_b, task_id, "GET /image?task_id=")
    await _assert_hidden(
        lambda job: world.client.get(f"/jobs/{job}", headers=world.b), task_id, "B reads A's task"
    )


async def _task_status(world: World, job_id: str) -> None:
    """A reads its task; B is told it does not exist (and so is told of A's plain job)."""
    task_id = await _task_of(world, world.a)
    owner = await world.client.get("/image", headers=world.a, params={"task_id": task_id})
    assert owner.status_code == 200, owner.text
    await _b_cannot_read_task(world, task_id)

    async def as_b(job: str) -> httpx.Response:
        return await world.client.get("/image", headers=world.b, params={"task_id": job})

    await _assert_hidden(as_b, job_id, "GET /image?task_id= on a job")


def _submit(path: str) -> Check:
    """B's task is B's: B reads it, A is told it does not exist and does not list it."""

    async def check(world: World, job_id: str) -> None:
        if path == "/image-sync":
            # No stop may be in force (a sync task would be refused), and no start is made (A's
            # job stays as it is). No worker here: the result is stored as a worker's would be.
            async with world.services.sessions.begin() as session:
                await dispatch_repo.lift_stop(session)
            call = asyncio.create_task(
                world.client.post(path, headers=world.b, json=_task_body(), timeout=90)
            )

            async def b_task() -> str | None:
                listed = await _listed(world, world.b)
                jobs = [job for job in listed if job not in known]
                return jobs[0] if jobs else None

            known = await _listed(world, world.b)
            await wait_until(lambda: _has(b_task), what="B's task recorded")
            found = await b_task()
            assert found is not None
            new = found

            async def rendered() -> bool:
                return bool((await _job_of(world, world.b, new))["rendered_pages"] == 1)

            await wait_until(rendered, what="B's task rendered")
            result = ResultMessage(job_id=uuid.UUID(new), page_number=1, status="done", text="b")
            await store_result(world.services.sessions, result)
            response = await call
            assert response.status_code == 200, response.text
            assert response.json()["result"] == "b"
        else:
            response = await world.client.post(path, headers=world.b, json=_task_body())
            assert response.status_code == 202, response.text
            new = str(response.json()["task_id"])
        assert (await _job_of(world, world.b, new))["tenant"] == B
        swapped = World(**{**world.__dict__, "a": world.b, "b": world.a})
        await _b_cannot_read_task(swapped, new)
        assert new not in await _listed(world, world.a)

    return check


async def _has(find: Callable[[], Awaitable[str | None]]) -> bool:
    return await find() is not None


async def _watch_task(world: World, job_id: str) -> None:
    task_id = await _task_of(world, world.a)
    async with aconnect_ws(f"/watch-task?task_id={task_id}", world.live, headers=world.a) as socket:  # type: ignore[var-annotated]
        assert json.loads(await socket.receive_text())["task_id"] == task_id

    async def closed(task: str) -> tuple[int, str]:
        async with aconnect_ws(f"/watch-task?task_id={task}", world.live, headers=world.b) as ws:  # type: ignore[var-annotated]
            with pytest.raises(WebSocketDisconnect) as ended:
                message = await ws.receive_text()
                pytest.fail(f"a task it may not watch sent {message!r}")
        return ended.value.code, str(ended.value.reason)

    unknown = str(uuid.uuid4())
    for hidden in (task_id, job_id):
        code, reason = await closed(hidden)
        unknown_code, unknown_reason = await closed(unknown)
        assert code == unknown_code == 1008
        assert reason.replace(hidden, "<job>") == unknown_reason.replace(unknown, "<job>")


async def _image_of(world: World, headers: Headers) -> str:
    """An `/images` upload of the tenant `headers` name, its thumbnails made."""
    files = {"file": ("a.png", sample("smile.png").read_bytes())}
    response = await world.client.post(
        "/images", headers=headers, files=files, data={"dedup": "false"}
    )
    assert response.status_code == 202, response.text
    image_id = str(response.json()["id"])

    async def done() -> bool:
        answer = await world.client.get(f"/images/{image_id}", headers=headers)
        return bool(answer.json()["status"] == "DONE")

    await wait_until(done, what=f"image {image_id} done")
    return image_id


def _image_read(path: str) -> Check:
    """A reads its image through `path`; B is told the image does not exist."""

    async def check(world: World, job_id: str) -> None:
        image_id = await _image_of(world, world.a)
        owner = await world.client.get(path.format(image_id=image_id), headers=world.a)
        assert owner.status_code == 200, (path, owner.text)

        async def as_b(image: str) -> httpx.Response:
            return await world.client.get(path.format(image_id=image), headers=world.b)

        await _assert_hidden(as_b, image_id, f"GET {path}")

    return check


async def _image_upload(world: World, job_id: str) -> None:
    """B's image is B's: A is told it does not exist."""
    image_id = await _image_of(world, world.b)

    async def as_a(image: str) -> httpx.Response:
        return await world.client.get(f"/images/{image}", headers=world.a)

    await _assert_hidden(as_a, image_id, "POST /images: A reads B's image")


async def _image_delete(world: World, job_id: str) -> None:
    """B's delete of A's image is told it does not exist, and leaves the image as it was."""
    image_id = await _image_of(world, world.a)

    async def as_b(image: str) -> httpx.Response:
        return await world.client.delete(f"/images/{image}", headers=world.b)

    await _assert_hidden(as_b, image_id, "DELETE /images/{image_id}")
    after = await world.client.get(f"/images/{image_id}", headers=world.a)
    assert after.json()["status"] == "DONE"


async def _download(world: World, job_id: str) -> None:
    """A downloads the workbook of its done `/convert/batch` job; B is told the file does not
    exist, as for an unknown file."""
    files = {"files": ("a.pdf", blank_pdf(1))}
    params = {"text_layer": "off", "dedup": "false"}
    response = await world.client.post(
        "/convert/batch", headers=world.a, files=files, params=params
    )
    assert response.status_code == 202, response.text
    converted = str(response.json()["job_id"])

    async def rendered() -> bool:
        return bool((await _job_of(world, world.a, converted))["rendered_pages"] == 1)

    await wait_until(rendered, what="A's batch rendered")
    result = ResultMessage(job_id=uuid.UUID(converted), page_number=1, status="done", text="a")
    await store_result(world.services.sessions, result)
    [download] = (await _job_of(world, world.a, converted))["downloads"]
    file_id = str(download["file_id"])
    owner = await world.client.get(f"/download/{file_id}", headers=world.a)
    assert owner.status_code == 200, owner.text

    async def as_b(file: str) -> httpx.Response:
        return await world.client.get(f"/download/{file}", headers=world.b)

    await _assert_hidden(as_b, file_id, "GET /download/{file_id}")
    assert "downloads" not in (await world.client.get(f"/jobs/{converted}", headers=world.b)).json()


async def _signed_page_image(world: World, job_id: str) -> None:
    """A worker's page image needs the URL's signature, which no tenant's header or key gives:
    B, and A itself, are refused without one, and with a made-up one."""
    path = f"/page-images/{job_id}/1"
    forged = {"expires": "99999999999", "signature": "0" * 64}
    for headers in (world.b, world.a):
        for params in ({}, forged):
            response = await world.client.get(path, headers=headers, params=params)
            assert response.status_code == 403, (path, params, response.text)
            assert response.json()["error"] == "forbidden"


CHECKS: dict[tuple[str, str], Check] = {
    ("POST", "/ocrpdf"): _upload("/ocrpdf", "file", "b.pdf", lambda: blank_pdf(1)),
    ("POST", "/ocrimage"): _upload(
        "/ocrimage", "file", "b.png", lambda: sample("smile.png").read_bytes()
    ),
    ("POST", "/jobs"): _upload("/jobs", "files", "b.pdf", lambda: blank_pdf(1)),
    ("GET", "/jobs"): _list,
    ("GET", "/jobs/{job_id}"): _get_job,
    ("GET", "/jobs/{job_id}/pages/{page_number}"): _read("/jobs/{job_id}/pages/{page_number}"),
    ("GET", "/jobs/{job_id}/events"): _events,
    ("WS", "/jobs/{job_id}/ws"): _websocket,
    ("POST", "/jobs/{job_id}/cancel"): _change("POST", "/jobs/{job_id}/cancel"),
    ("DELETE", "/jobs/{job_id}"): _change("DELETE", "/jobs/{job_id}"),
    ("GET", "/jobs/{job_id}/result"): _result,
    ("GET", "/jobs/{job_id}/pages/{page_number}/image"): _read(
        "/jobs/{job_id}/pages/{page_number}/image"
    ),
    ("POST", "/image"): _submit("/image"),
    ("POST", "/image-sync"): _submit("/image-sync"),
    ("GET", "/image"): _task_status,
    ("WS", "/watch-task"): _watch_task,
    ("POST", "/convert/batch"): _upload("/convert/batch", "files", "b.pdf", lambda: blank_pdf(1)),
    ("GET", "/download/{file_id}"): _download,
    ("GET", "/jobs/{job_id}/pages/{page_number}/thumbnail"): _read(
        "/jobs/{job_id}/pages/{page_number}/thumbnail"
    ),
    ("POST", "/images"): _image_upload,
    ("GET", "/images/{image_id}"): _image_read("/images/{image_id}"),
    ("GET", "/images/{image_id}/original"): _image_read("/images/{image_id}/original"),
    ("GET", "/images/{image_id}/thumbnails/{size}"): _image_read(
        "/images/{image_id}/thumbnails/300x300"
    ),
    ("DELETE", "/images/{image_id}"): _image_delete,
    ("GET", "/page-images/{job_id}/{page_number}"): _signed_page_image,
}


# ------------------------------------------------------------ the two worlds


@dataclass(frozen=True)
class Keyed:
    gateway: Gateway
    a_key: str
    b_key: str


def _bearer(key: str) -> Headers:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
async def keyed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Keyed]:
    """A gateway of its own with `client_auth=api_key`, an operator's key, and a key of each
    tenant."""
    async with isolated_gateway(
        tmp_path_factory.mktemp("keyed"), client_auth="api_key", admin_api_key=OPERATOR_KEY
    ) as gateway:
        a_key = await gateway.services.tenants.create_key(tenant=A, label="isolation tests")
        b_key = await gateway.services.tenants.create_key(tenant=B)
        yield Keyed(gateway, a_key.key, b_key.key)


@contextlib.asynccontextmanager
async def _live(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        served(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}{API_PREFIX}", timeout=30) as http,
    ):
        yield http


@pytest.fixture
async def open_world(
    app: FastAPI, services: Components, client: httpx.AsyncClient
) -> AsyncIterator[World]:
    """`client_auth=off`: each tenant names itself with `X-Tenant-Id`."""
    async with _live(app) as live:
        yield World(app, services, client, live, {"X-Tenant-Id": A}, {"X-Tenant-Id": B}, None)


@pytest.fixture
async def keyed_world(keyed: Keyed) -> AsyncIterator[World]:
    """`client_auth=api_key`: each tenant's key names it."""
    gateway = keyed.gateway
    async with _live(gateway.app) as live:
        yield World(
            gateway.app,
            gateway.services,
            gateway.client,
            live,
            _bearer(keyed.a_key),
            _bearer(keyed.b_key),
            _bearer(OPERATOR_KEY),
        )


async def _rendered_job(world: World, headers: Headers, pages: int = 2) -> str:
    """A job of the tenant `headers` name, with every page rendered."""
    files = {"file": ("a.pdf", blank_pdf(pages))}
    response = await world.client.post("/ocrpdf", headers=headers, files=files)
    assert response.status_code == 202, response.text
    job_id = str(response.json()["job_id"])

    async def rendered() -> bool:
        return bool((await _job_of(world, headers, job_id))["rendered_pages"] == pages)

    await wait_until(rendered, what=f"job {job_id} rendered")
    return job_id


# ------------------------------------------------------------ the tests


def test_every_client_route_has_an_isolation_check(app: FastAPI) -> None:
    routes = client_routes(app)
    missing = routes - CHECKS.keys()
    assert not missing, (
        f"client routes without a tenant isolation check: {sorted(missing)}; add one to CHECKS"
    )
    assert not CHECKS.keys() - routes, "CHECKS names routes the app no longer has"
    assert ("WS", "/jobs/{job_id}/ws") in routes and ("POST", "/ocrpdf") in routes


async def _no_route_lets_b_reach_a_job(world: World) -> None:
    job_id = await _rendered_job(world, world.a)
    before = await _job_of(world, world.a, job_id)
    assert before["tenant"] == A
    for route in sorted(client_routes(world.app)):
        check = CHECKS.get(route)
        if check is None:
            pytest.fail(f"{route} has no isolation check")
        await check(world, job_id)
    after = await _job_of(world, world.a, job_id)
    assert (after["status"], after["pages"]) == (before["status"], before["pages"])


async def test_no_client_route_lets_a_tenant_reach_another_tenants_job_by_header(
    open_world: World,
) -> None:
    await _no_route_lets_b_reach_a_job(open_world)


async def test_no_client_route_lets_a_tenant_reach_another_tenants_job_by_key(
    keyed_world: World,
) -> None:
    await _no_route_lets_b_reach_a_job(keyed_world)


async def test_the_operator_sees_every_tenant_and_narrows_to_one(keyed_world: World) -> None:
    world = keyed_world
    assert world.operator is not None
    a_job, b_job = await _rendered_job(world, world.a), await _rendered_job(world, world.b)
    operator = world.operator
    assert {a_job, b_job} <= await _listed(world, operator)
    assert (await _job_of(world, operator, a_job))["tenant"] == A
    assert (await _job_of(world, operator, b_job))["tenant"] == B
    by_api_key_header = {"X-API-Key": OPERATOR_KEY}
    assert (await _job_of(world, by_api_key_header, b_job))["tenant"] == B

    only_a = {**operator, "X-Tenant-Id": A}
    listed = await _listed(world, only_a)
    assert a_job in listed and b_job not in listed

    async def as_operator_for_a(job: str) -> httpx.Response:
        return await world.client.get(f"/jobs/{job}", headers=only_a)

    await _assert_hidden(as_operator_for_a, b_job, "the operator narrowed to A reads B's job")

    async def admin_list(headers: Headers, **params: str) -> dict[str, str]:
        response = await world.client.get("/admin/jobs", headers=headers, params=params)
        assert response.status_code == 200, response.text
        return {item["job_id"]: item["tenant"] for item in response.json()["items"]}

    everyone = await admin_list(operator)
    assert (everyone[a_job], everyone[b_job]) == (A, B)
    assert set((await admin_list(operator, tenant=A)).values()) == {A}
    assert a_job in await admin_list(operator, tenant=A)
    assert set((await admin_list(operator, tenant=B)).values()) == {B}
    assert await admin_list(operator, tenant="nobody") == {}
    detail = await world.client.get(f"/admin/job/{b_job}", headers=operator)
    assert detail.json()["tenant"] == B
    refused = await world.client.get("/admin/jobs", headers=operator, params={"tenant": "a b"})
    assert refused.status_code == 422
    for client_key in (world.a, world.b):
        assert (await world.client.get("/admin/jobs", headers=client_key)).status_code == 401


async def test_a_key_decides_the_tenant_on_http_routes_and_websockets(keyed_world: World) -> None:
    world = keyed_world
    job_id = await _rendered_job(world, world.a)
    url = f"/jobs/{job_id}"
    for headers in (
        {},
        _bearer("ogw_0123456789abcdef_not-a-real-secret-at-all"),
        {"X-Tenant-Id": A},
    ):
        answer = await world.client.get(url, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"] == "Bearer"
    mismatch = await world.client.get(url, headers={**world.b, "X-Tenant-Id": A})
    assert (mismatch.status_code, mismatch.json()["error"]) == (403, "forbidden")
    assert (await world.client.get(url, headers={**world.a, "X-Tenant-Id": A})).status_code == 200
    key_header = {"X-API-Key": world.a["Authorization"].removeprefix("Bearer ")}
    assert (await world.client.get(url, headers=key_header)).status_code == 200

    code, reason = await _ws_close(world, job_id, {})
    assert code == 1008 and "API key" in reason
    code, reason = await _ws_close(world, job_id, {**world.b, "X-Tenant-Id": A})
    assert code == 1008 and "another tenant" in reason
    async with aconnect_ws(f"/jobs/{job_id}/ws", world.live, headers=key_header) as socket:  # type: ignore[var-annotated]
        assert json.loads(await socket.receive_text())["type"] == "job.snapshot"
