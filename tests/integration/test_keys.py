"""Client keys and tenants: the `ocr-gateway keys` and `tenants` commands, the admin routes,
`OCR_GATEWAY_CLIENT_AUTH=api_key` on the client routes, and the refusal to listen off the
loopback unprotected."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from ocr_gateway.app import create_app
from ocr_gateway.components import Components
from ocr_gateway.core.settings import Settings
from tests.support.documents import blank_pdf
from tests.support.gateway import make_settings
from tests.support.net import free_port
from tests.support.routes import served_routes
from tests.support.waiting import wait_until

ADMIN_KEY = "admin-" + "k" * 40
CACHE_S = 0.5
KEY = re.compile(r"ogw_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")
SECRET = re.compile(r"whsec_[A-Za-z0-9+/]{43}=")
# A key of the right shape that was never issued.
UNKNOWN_KEY = "ogw_0123456789abcdef_" + "A" * 43


# --- the commands -----------------------------------------------------------------------------


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The caller's environment without its OCR_GATEWAY_* variables, on the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCR_GATEWAY_")}
    env.update(
        OCR_GATEWAY_DATABASE_URL=settings.database_url,
        OCR_GATEWAY_LOGS_DIR=str(settings.logs_dir),
        OCR_GATEWAY_FILES_DIR=str(settings.files_dir),
        OCR_GATEWAY_TEMP_DIR=str(settings.temp_dir),
        OCR_GATEWAY_PAGES_QUEUE=settings.pages_queue,
        OCR_GATEWAY_RESULTS_QUEUE=settings.results_queue,
    )
    env.update(extra)
    return env


async def cli(
    settings: Settings, cwd: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`ocr-gateway <args>` in a process of its own (no `.env` in `cwd`)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ocr_gateway", *args],
        env=cli_env(settings, **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def fields(stdout: str) -> dict[str, str]:
    """`name: value` lines as a dict; every line must be one."""
    lines = stdout.splitlines()
    pairs = [line.split(": ", 1) for line in lines]
    assert all(len(pair) == 2 for pair in pairs), stdout
    return {name: value for name, value in pairs}


def refused_in_one_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


async def test_keys_commands_print_a_key_once_and_list_revoke_and_rotate(
    services: Components, tmp_path: Path
) -> None:
    settings = services.settings
    made = await cli(settings, tmp_path, "keys", "create", "--tenant", "acme", "--label", "ci bot")
    assert made.returncode == 0, made.stderr
    first = fields(made.stdout)
    assert list(first) == ["key_id", "key", "webhook_secret"]
    assert KEY.fullmatch(first["key"]) and first["key"].startswith(f"ogw_{first['key_id']}_")
    assert SECRET.fullmatch(first["webhook_secret"])

    again = await cli(settings, tmp_path, "keys", "create", "--tenant", "acme")
    assert again.returncode == 0, again.stderr
    second = fields(again.stdout)
    assert list(second) == ["key_id", "key"], "the tenant exists: no secret this time"
    assert await services.keys.authenticate(first["key"]) == "acme"
    assert await services.keys.authenticate(second["key"]) == "acme"

    listed = await cli(settings, tmp_path, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [row[:3] for row in rows] == [
        [first["key_id"], "acme", "ci bot"],
        [second["key_id"], "acme", "-"],
    ]
    assert all(len(row) == 5 and row[4] == "active" for row in rows)
    assert first["key"] not in listed.stdout and second["key"] not in listed.stdout
    other = await cli(settings, tmp_path, "keys", "list", "--tenant", "other")
    assert (other.returncode, other.stdout) == (0, "")

    revoked = await cli(settings, tmp_path, "keys", "revoke", first["key_id"])
    assert revoked.returncode == 0, revoked.stderr
    gone = fields(revoked.stdout)
    assert list(gone) == ["key_id", "revoked_at"] and gone["key_id"] == first["key_id"]
    twice = await cli(settings, tmp_path, "keys", "revoke", first["key_id"])
    assert fields(twice.stdout) == gone, "a second revoke keeps the first time"
    listed = await cli(settings, tmp_path, "keys", "list", "--tenant", "acme")
    states = [line.split("\t")[4] for line in listed.stdout.splitlines()]
    assert states == [f"revoked {gone['revoked_at']}", "active"]

    rotated = await cli(settings, tmp_path, "tenants", "rotate-secret", "acme")
    assert rotated.returncode == 0, rotated.stderr
    new_secret = fields(rotated.stdout)["webhook_secret"]
    assert SECRET.fullmatch(new_secret) and new_secret != first["webhook_secret"]
    async with services.sessions() as session:
        stored = await session.scalar(
            text("SELECT webhook_secret FROM tenants WHERE name = 'acme'")
        )
    assert stored == new_secret


async def test_keys_commands_refuse_in_one_line(services: Components, tmp_path: Path) -> None:
    settings = services.settings
    refused_in_one_line(
        await cli(settings, tmp_path, "keys", "revoke", "0123456789abcdef"), "no API key"
    )
    refused_in_one_line(
        await cli(settings, tmp_path, "keys", "create", "--tenant", "bad name"), "tenant name"
    )
    refused_in_one_line(
        await cli(settings, tmp_path, "keys", "create", "--tenant", "a" * 65), "tenant name"
    )
    refused_in_one_line(
        await cli(settings, tmp_path, "tenants", "rotate-secret", "nobody"), "no tenant"
    )
    unreachable = await cli(
        settings,
        tmp_path,
        "keys",
        "list",
        OCR_GATEWAY_DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x",
    )
    refused_in_one_line(unreachable, "database")
    async with services.sessions() as session:
        tenants = await session.scalar(text("SELECT count(*) FROM tenants WHERE name <> 'default'"))
    assert tenants == 0, "a refused command leaves nothing behind"


async def test_only_the_hash_of_a_key_is_stored(services: Components) -> None:
    created = await services.tenants.create_key(tenant="acme", label="hashed")
    secret = created.key.removeprefix(f"ogw_{created.key_id}_")
    async with services.sessions() as session:
        row = (
            await session.execute(
                text("SELECT secret_hash, a::text AS whole FROM api_keys a WHERE key_id = :id"),
                {"id": created.key_id},
            )
        ).one()
    assert bytes(row.secret_hash) == hashlib.sha256(secret.encode()).digest()
    assert secret not in row.whole and created.key not in row.whole


# --- api_key mode ---------------------------------------------------------------------------


def keyed_settings(services: Components, tmp: Path) -> Settings:
    """The test app's database, queues and storage, as a replica has them."""
    return make_settings(
        tmp,
        files_dir=services.settings.files_dir,
        temp_dir=services.settings.temp_dir,
        database_url=services.settings.database_url,
        pages_queue=services.settings.pages_queue,
        results_queue=services.settings.results_queue,
        admin_api_key=ADMIN_KEY,
        client_auth="api_key",
        api_key_cache_s=CACHE_S,
        webhook_allow_hosts="127.0.0.1",
    )


class Api:
    """One API process (an app with its own key cache) in `api_key` mode."""

    def __init__(self, app: FastAPI, http: httpx.AsyncClient) -> None:
        self.app = app
        self.http = http

    async def authenticated(self, key: str) -> bool:
        """Whether a client route takes `key`: an upload without a body is refused with 400
        after the key is checked, and with 401 before."""
        response = await self.http.post("/ocrpdf", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code in (400, 401), response.text
        return response.status_code == 400


@pytest.fixture(scope="module")
async def keyed(
    services: Components, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    """A second API process on the test database and queues: client keys required."""
    app = create_app(
        keyed_settings(services, tmp_path_factory.mktemp("keyed")), run_dispatcher=False
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway/api/v1", timeout=30
        ) as http,
    ):
        yield Api(app, http)


def admin() -> dict[str, str]:
    return {"X-API-Key": ADMIN_KEY}


async def new_key(api: Api, tenant: str, label: str | None = None) -> dict[str, Any]:
    response = await api.http.post(
        "/admin/keys", json={"tenant": tenant, "label": label}, headers=admin()
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def upload_as(api: Api, services: Components, headers: dict[str, str]) -> httpx.Response:
    """Upload a one-page PDF; once accepted, wait until its page is rendered, so that no render
    runs on when the test's tables are emptied."""
    response = await api.http.post(
        "/ocrpdf", files={"file": ("one.pdf", blank_pdf(1))}, headers=headers
    )
    if response.status_code == 202:

        async def rendered() -> bool:
            async with services.sessions() as session:
                done = await session.scalar(
                    text(
                        "SELECT rendered_pages = total_page_number OR error IS NOT NULL"
                        " FROM jobs WHERE job_id = :id"
                    ),
                    {"id": response.json()["job_id"]},
                )
            return bool(done)

        await wait_until(rendered, timeout=60, what="the upload is rendered")
    return response


async def job_tenants(services: Components) -> list[str]:
    async with services.sessions() as session:
        rows = await session.scalars(text("SELECT tenant FROM jobs ORDER BY created_at"))
        return list(rows)


async def test_client_routes_answer_401_without_a_valid_key(keyed: Api) -> None:
    malformed = "ogw_" + "z" * 60
    for headers in (
        {},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {UNKNOWN_KEY}"},
        {"Authorization": f"Bearer {malformed}"},
        {"Authorization": f"Basic {UNKNOWN_KEY}"},
        {"X-API-Key": UNKNOWN_KEY},
        {"X-API-Key": ""},
        {"X-API-Key": UNKNOWN_KEY, "X-Tenant-Id": "default"},
    ):
        for route in ("/ocrpdf", "/ocrimage"):
            response = await keyed.http.post(route, headers=headers)
            assert response.status_code == 401, (route, headers, response.text)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_key_decides_the_tenant_by_bearer_or_x_api_key(
    keyed: Api, services: Components
) -> None:
    acme = (await new_key(keyed, "acme"))["key"]
    assert (
        await upload_as(keyed, services, {"Authorization": f"Bearer {acme}"})
    ).status_code == 202
    assert (await upload_as(keyed, services, {"X-API-Key": acme})).status_code == 202
    same = await upload_as(keyed, services, {"X-API-Key": acme, "X-Tenant-Id": "acme"})
    assert same.status_code == 202, same.text
    assert await job_tenants(services) == ["acme"] * 3


async def test_a_tenant_header_that_disagrees_or_is_malformed_is_refused(
    keyed: Api, services: Components
) -> None:
    acme = (await new_key(keyed, "acme"))["key"]
    await new_key(keyed, "globex")
    cases = [
        ("globex", 403, "forbidden"),
        ("nobody", 403, "forbidden"),
        ("bad name", 422, "invalid_field"),
        ("acme/../x", 422, "invalid_field"),
        ("a" * 65, 422, "invalid_field"),
        ("", 422, "invalid_field"),
    ]
    for tenant, code, kind in cases:
        response = await upload_as(
            keyed, services, {"Authorization": f"Bearer {acme}", "X-Tenant-Id": tenant}
        )
        assert response.status_code == code, (tenant, response.text)
        assert response.json()["error"] == kind
    assert await job_tenants(services) == [], "a refused upload leaves no job"
    async with services.sessions() as session:
        names = list(await session.scalars(text("SELECT name FROM tenants ORDER BY name")))
    assert names == ["acme", "default", "globex"]
    ok = await upload_as(
        keyed, services, {"Authorization": f"Bearer {acme}", "X-Tenant-Id": "a" * 64}
    )
    assert ok.status_code == 403, "64 characters is a well-formed name, of another tenant"


async def test_a_revoked_key_is_refused_by_every_api_process_after_the_cache_time(
    keyed: Api, services: Components, tmp_path: Path
) -> None:
    second_app = create_app(keyed_settings(services, tmp_path), run_dispatcher=False)
    async with (
        second_app.router.lifespan_context(second_app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=second_app), base_url="http://gateway/api/v1"
        ) as http,
    ):
        apis = [keyed, Api(second_app, http)]
        created = await new_key(keyed, "acme")
        # Both processes have checked the key, and remember the answer.
        for api in apis:
            assert await api.authenticated(created["key"])
        revoked = await keyed.http.delete(f"/admin/keys/{created['key_id']}", headers=admin())
        assert revoked.status_code == 200, revoked.text
        since = time.monotonic()
        for api in apis:

            async def refused(api: Api = api) -> bool:
                return not await api.authenticated(created["key"])

            await wait_until(refused, timeout=5, interval=0.05, what="the revoke is seen")
            assert time.monotonic() - since < CACHE_S + 2.0, "well within 5 s"
        await asyncio.sleep(CACHE_S + 0.1)
        for api in apis:
            assert not await api.authenticated(created["key"]), "and it stays refused"


def admin_calls(app: FastAPI) -> list[tuple[str, str]]:
    """Every admin route of the app, with made-up path parameters: a route added later is in
    this list without anyone adding it."""
    fillers = {"job_id": "00000000-0000-0000-0000-000000000000", "page_number": "1"}
    calls = []
    for route in served_routes(app):
        if not route.path.startswith("/api/v1/admin"):
            continue
        assert route.method not in ("WS", "MOUNT"), f"an admin route this test cannot call: {route}"
        path = re.sub(
            r"\{(\w+)(?::\w+)?\}",
            lambda m: fillers.get(m[1], "1"),
            route.path.removeprefix("/api/v1"),
        )
        calls.append((route.method, path))
    return calls


async def test_a_client_key_never_opens_an_admin_route(keyed: Api) -> None:
    client_key = (await new_key(keyed, "acme"))["key"]
    calls = admin_calls(keyed.app)
    for expected in [
        ("POST", "/admin/keys"),
        ("GET", "/admin/keys"),
        ("DELETE", "/admin/keys/1"),
        ("GET", "/admin/tenants"),
        ("GET", "/admin/tenants/1"),
        ("PATCH", "/admin/tenants/1"),
        ("POST", "/admin/tenants/1/rotate-secret"),
        ("DELETE", "/admin/delete/jobs"),
        ("GET", "/admin/jobs"),
    ]:
        assert expected in calls
    for method, path in calls:
        for headers in (
            {"Authorization": f"Bearer {client_key}"},
            {"X-API-Key": client_key},
            {"X-API-Key": client_key, "X-Tenant-Id": "acme"},
            {},
        ):
            response = await keyed.http.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"] == "unauthorized"
    keys = await keyed.http.get("/admin/keys", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert keys.status_code == 200, "the admin key, as a Bearer token too"


async def test_the_admin_key_works_on_client_routes(keyed: Api, services: Components) -> None:
    assert (await upload_as(keyed, services, admin())).status_code == 202
    named = await upload_as(keyed, services, {**admin(), "X-Tenant-Id": "acme"})
    assert named.status_code == 202, named.text
    assert await job_tenants(services) == ["default", "acme"]


# --- the admin routes ---------------------------------------------------------------------------


async def test_admin_key_routes_create_list_and_revoke(keyed: Api) -> None:
    first = await new_key(keyed, "acme", "ci bot")
    assert set(first) == {"key_id", "key", "tenant", "label", "created_at", "webhook_secret"}
    assert (first["tenant"], first["label"]) == ("acme", "ci bot")
    assert KEY.fullmatch(first["key"]) and SECRET.fullmatch(first["webhook_secret"])
    second = await new_key(keyed, "acme")
    assert second["webhook_secret"] is None and second["label"] is None
    other = await new_key(keyed, "globex")

    everything = await keyed.http.get("/admin/keys", headers=admin())
    assert everything.status_code == 200
    items = everything.json()["items"]
    assert [item["key_id"] for item in items] == [
        first["key_id"],
        second["key_id"],
        other["key_id"],
    ]
    assert all(
        set(item) == {"key_id", "tenant", "label", "created_at", "revoked_at"} for item in items
    )
    for created in (first, second, other):
        assert created["key"] not in everything.text
    only = await keyed.http.get("/admin/keys", params={"tenant": "globex"}, headers=admin())
    assert [item["key_id"] for item in only.json()["items"]] == [other["key_id"]]
    bad = await keyed.http.get("/admin/keys", params={"tenant": "bad name"}, headers=admin())
    assert bad.status_code == 422

    revoked = await keyed.http.delete(f"/admin/keys/{first['key_id']}", headers=admin())
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    again = await keyed.http.delete(f"/admin/keys/{first['key_id']}", headers=admin())
    assert again.status_code == 200 and again.json() == revoked.json()
    unknown = await keyed.http.delete("/admin/keys/0123456789abcdef", headers=admin())
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"

    for body in (
        {"tenant": "bad name"},
        {"tenant": "a" * 65},
        {},
        {"tenant": "x", "extra": 1},
        {"tenant": "x", "label": "nul\u0000byte"},
        {"tenant": "x", "label": "l" * 201},
    ):
        refused = await keyed.http.post("/admin/keys", json=body, headers=admin())
        assert refused.status_code == 422, (body, refused.text)


async def test_admin_tenant_routes_read_update_and_rotate(keyed: Api) -> None:
    created = await new_key(keyed, "acme")
    listed = await keyed.http.get("/admin/tenants", headers=admin())
    assert [t["name"] for t in listed.json()["items"]] == ["acme", "default"]
    assert "whsec_" not in listed.text

    one = await keyed.http.get("/admin/tenants/acme", headers=admin())
    assert one.status_code == 200
    tenant = one.json()
    assert "webhook_secret" not in tenant and tenant["weight"] == 1
    assert tenant["max_pending_pages"] is None
    assert tenant["limits"]["max_pending_pages"] == 100_000, "the default from settings"

    url = "/admin/tenants/acme"
    changed = await keyed.http.patch(
        url,
        json={
            "weight": 3,
            "max_pending_pages": 10,
            "uploads_per_minute": 5,
            "callback_url": "http://127.0.0.1:9/hook",
            "callback_events": "page",
        },
        headers=admin(),
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["weight"], body["max_pending_pages"], body["limits"]["max_pending_pages"]) == (
        3,
        10,
        10,
    )
    assert (body["callback_url"], body["callback_events"]) == ("http://127.0.0.1:9/hook", "page")
    assert body["updated_at"] > tenant["updated_at"]

    reset = await keyed.http.patch(
        url, json={"max_pending_pages": None, "callback_url": None}, headers=admin()
    )
    body = reset.json()
    assert (body["max_pending_pages"], body["callback_url"]) == (None, None)
    assert (body["weight"], body["uploads_per_minute"]) == (3, 5), "fields left out are kept"

    for bad in (
        {"weight": 0},
        {"weight": None},
        {"weight": 10**6},
        {"max_stored_bytes": 0},
        {"uploads_per_minute": 2**31},
        {"callback_events": "all"},
        {"callback_events": None},
        {"callback_url": "ftp://127.0.0.1/x"},
        {"callback_url": "not a url"},
        {"callback_url": "http://127.0.0.1/\u0000"},
        {"callback_url": "http://127.0.0.1/" + "a" * 2048},
        {"unknown": 1},
    ):
        refused = await keyed.http.patch(url, json=bad, headers=admin())
        assert refused.status_code == 422, (bad, refused.text)
    missing = await keyed.http.patch("/admin/tenants/nobody", json={"weight": 2}, headers=admin())
    assert missing.status_code == 404
    assert (await keyed.http.get("/admin/tenants/nobody", headers=admin())).status_code == 404
    malformed = await keyed.http.get("/admin/tenants/" + "a" * 65, headers=admin())
    assert malformed.status_code == 422 and malformed.json()["error"] == "invalid_field"

    rotated = await keyed.http.post("/admin/tenants/acme/rotate-secret", headers=admin())
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["tenant"] == "acme"
    assert SECRET.fullmatch(rotated.json()["webhook_secret"])
    assert rotated.json()["webhook_secret"] != created["webhook_secret"]
    nobody = await keyed.http.post("/admin/tenants/nobody/rotate-secret", headers=admin())
    assert nobody.status_code == 404


# --- secure by default --------------------------------------------------------------------------


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Processes a test starts; killed at its end whatever happened."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for process in started:
        if process.returncode is None:
            process.kill()
            await asyncio.wait_for(process.wait(), 10)


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["serve", "--host", "0.0.0.0"], {}, ["0.0.0.0", "OCR_GATEWAY_ADMIN_API_KEY"]),
        (["run"], {"OCR_GATEWAY_HOST": "0.0.0.0"}, ["OCR_GATEWAY_ADMIN_API_KEY"]),
        (["serve", "--host", "::"], {"OCR_GATEWAY_ADMIN_API_KEY": ""}, ["ADMIN_API_KEY"]),
        (
            ["run", "--host", "0.0.0.0"],
            {"OCR_GATEWAY_ADMIN_API_KEY": ADMIN_KEY},
            ["OCR_GATEWAY_CLIENT_AUTH=off", "OCR_GATEWAY_ALLOW_OPEN_CLIENTS"],
        ),
    ],
)
async def test_serve_and_run_refuse_to_listen_off_the_loopback_unprotected(
    services: Components, tmp_path: Path, args: list[str], env: dict[str, str], words: list[str]
) -> None:
    port = str(free_port())
    result = await cli(services.settings, tmp_path, *args, "--port", port, **env)
    refused_in_one_line(result, *words)


async def test_serve_starts_off_the_loopback_with_an_admin_key_and_client_keys(
    services: Components, tmp_path: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    port = free_port()
    env = cli_env(
        services.settings,
        OCR_GATEWAY_ADMIN_API_KEY=ADMIN_KEY,
        OCR_GATEWAY_CLIENT_AUTH="api_key",
        OCR_GATEWAY_RENDER_WORKERS="1",
        OCR_GATEWAY_INSPECT_WORKERS="1",
    )
    with (tmp_path / "serve.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "ocr_gateway", "serve", "--host", "0.0.0.0", "--port", str(port)),
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
    processes.append(process)
    base = f"http://127.0.0.1:{port}/api/v1"

    async def up() -> bool:
        assert process.returncode is None, (tmp_path / "serve.log").read_text()
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{base}/health", timeout=1)).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(up, timeout=60, interval=0.2)
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.post("/ocrpdf")).status_code == 401
        assert (await http.get("/admin/keys")).status_code == 401
        assert (await http.get("/admin/keys", headers=admin())).status_code == 200
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 30) == 0
