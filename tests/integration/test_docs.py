"""`/docs` and `/redoc` work offline: their pages name no other host, and the gateway itself
serves every script and stylesheet they load."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

# A URL with a scheme or a protocol-relative one (`//host/...`) in an attribute or a string.
EXTERNAL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}""")


@pytest.fixture
async def root(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=30
    ) as http:
        yield http


def _assets(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)="([^"]+)\"""", html)


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", {"text/javascript", "text/css", "image/png"}),
        ("/redoc", {"text/javascript", "image/png"}),
    ],
)
async def test_docs_pages_load_everything_from_the_gateway(
    root: httpx.AsyncClient, page: str, expected: set[str]
) -> None:
    response = await root.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert EXTERNAL.findall(html) == [], f"{page} names another host"
    assert "'/openapi.json'" in html or '"/openapi.json"' in html
    assets = _assets(html)
    kinds = set()
    for url in assets:
        assert url.startswith("/docs/assets/"), url
        asset = await root.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
        kinds.add(asset.headers["content-type"].split(";")[0])
    assert kinds == expected


async def test_swagger_ui_calls_no_validator_and_has_its_oauth_redirect(
    root: httpx.AsyncClient,
) -> None:
    html = (await root.get("/docs")).text
    assert '"validatorUrl": null' in html
    redirect = await root.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert EXTERNAL.findall(redirect.text) == []


async def test_docs_are_not_in_the_schema_and_a_missing_asset_is_404(
    root: httpx.AsyncClient,
) -> None:
    paths = (await root.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]
    assert (await root.get("/docs/assets/nothing.js")).status_code == 404
