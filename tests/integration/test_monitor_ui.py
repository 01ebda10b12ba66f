"""The monitoring page in a real browser: Debian's chromium driven by Playwright, against the
gateway served on a real port (admin key set), the real PostgreSQL and RabbitMQ, and a real
OCR worker process.

Signs in with a wrong key and then the right one, sees an uploaded job appear, presses its
Start with one worker running, sees its progress bar reach 100% from the job's events without
a reload, saves docs/img/monitor.png, checks a phone-sized window has no horizontal overflow,
and deletes the job. Playwright cannot download browsers here: CI installs `chromium`
(.ci/run); without /usr/bin/chromium the test skips, saying so.
"""

from __future__ import annotations

import importlib.util
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from ocr_gateway.app import create_app
from ocr_gateway.components import Components
from tests.support.documents import sample
from tests.support.gateway import make_settings
from tests.support.launched import Gateway, service_env
from tests.support.tcp import served
from tests.support.worker import LogLineMissing, worker_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_KEY = "monitor-test-admin-key"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "monitor.png"
# Four pages of a few words each: OCR stays short even on a busy CI machine.
SAMPLE = "habibi-rotated.pdf"

BROWSER_TEST_NEEDS = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: apt-get install -y chromium (.ci/run does)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="playwright is not installed: pip install -e '.[dev]' (`make test` does)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("rapidocr_onnxruntime") is None,
        reason="the worker's OCR engine is missing: pip install -e '.[ocr]' (`make test` does)",
    ),
]


@pytest.fixture
async def keyed_url(services: Components, tmp_path: Path) -> AsyncIterator[str]:
    """A second API process on the test database and queues, with an admin key, on a real
    port; publishing is left to the test app's dispatcher, as to a dispatcher process."""
    settings = make_settings(
        tmp_path,
        files_dir=services.settings.files_dir,
        temp_dir=services.settings.temp_dir,
        database_url=services.settings.database_url,
        pages_queue=services.settings.pages_queue,
        results_queue=services.settings.results_queue,
        admin_api_key=ADMIN_KEY,
    )
    app: FastAPI = create_app(settings, run_dispatcher=False)
    async with app.router.lifespan_context(app), served(app) as port:
        yield f"http://127.0.0.1:{port}"


async def test_the_page_is_served_without_the_key_and_its_data_needs_it(keyed_url: str) -> None:
    async with httpx.AsyncClient(base_url=keyed_url, timeout=30) as http:
        page = await http.get("/admin/ui")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert 'id="sign-in-form"' in page.text
        for asset in ("app.js", "app.css"):
            assert (await http.get(f"/admin/ui/static/{asset}")).status_code == 200
        refused = await http.get("/api/v1/admin/overview", headers={"X-API-Key": "wrong"})
        assert refused.status_code == 401
        assert refused.json()["error"]
        allowed = await http.get(
            "/api/v1/admin/overview", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert allowed.status_code == 200


@BROWSER_TEST_NEEDS[0]
@BROWSER_TEST_NEEDS[1]
@BROWSER_TEST_NEEDS[2]
async def test_sign_in_upload_start_progress_and_delete_in_chromium(
    keyed_url: str, services: Components
) -> None:
    from playwright.async_api import async_playwright, expect

    admin = {"X-API-Key": ADMIN_KEY}
    async with (
        async_playwright() as playwright,
        httpx.AsyncClient(base_url=f"{keyed_url}/api/v1", timeout=30, headers=admin) as api,
    ):
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            failed_requests: list[str] = []
            page.on("pageerror", lambda error: failed_requests.append(f"page error: {error}"))
            await page.goto(f"{keyed_url}/admin/ui")

            # 1. A wrong key: an error, nothing kept; then the right one.
            await page.fill("#key", "not-the-key")
            await page.click("#sign-in-form button[type=submit]")
            await expect(page.locator("#sign-in-error")).to_have_text("Wrong key.")
            await expect(page.locator("#dashboard")).to_be_hidden()
            assert await page.evaluate("sessionStorage.length") == 0
            await page.fill("#key", ADMIN_KEY)
            await page.click("#sign-in-form button[type=submit]")
            await expect(page.locator("#dashboard")).to_be_visible()
            await expect(page.locator("#sign-in-error")).to_be_hidden()
            assert ADMIN_KEY not in page.url
            await expect(page.locator("#dispatch-state")).to_have_text("stopped")
            # A marker that a reload would wipe out.
            await page.evaluate("window.notReloaded = true")

            # 2. An upload through the API; 3. the job appears.
            uploaded = await api.post(
                "/ocrpdf",
                files={"file": (SAMPLE, sample(SAMPLE).read_bytes())},
                data={"text_layer": "off"},  # every page goes to the worker
            )
            assert uploaded.status_code == 202, uploaded.text
            job_id = uploaded.json()["job_id"]
            job = page.locator(f'li.job[data-job-id="{job_id}"]')
            await expect(job).to_be_visible(timeout=15_000)
            await expect(job.locator(".job-name")).to_have_text(SAMPLE)
            bar = job.locator(".progress")
            await expect(bar).to_have_attribute("aria-valuenow", "0")

            # The job's Priority control and the dispatch rate limit, through the page.
            await job.locator(".priority input").fill("7")
            await job.locator(".priority button").click()
            await expect(job.locator(".priority-set")).to_have_text("priority 7 (4 pending pages)")
            async with services.sessions() as session:
                stored = await session.scalar(
                    text("SELECT priority FROM jobs WHERE job_id = :job"), {"job": job_id}
                )
            assert stored == 7
            await page.fill("#rate", "50")
            await page.click("#rate-form button")
            await expect(page.locator("#dispatch-rate")).to_have_text("50 pages/s")
            assert (await api.get("/admin/dispatch")).json()["pages_per_second"] == 50
            await page.fill("#rate", "")
            await page.click("#rate-form button")
            await expect(page.locator("#dispatch-rate")).to_have_text("none")
            assert (await api.get("/admin/dispatch")).json()["pages_per_second"] is None

            # 4. Start, with one worker consuming the pages queue.
            async with worker_process(services.settings, grace=None) as worker:
                await expect(page.locator("#worker-count")).to_have_text("1", timeout=15_000)
                await job.locator("button.start").click()
                await expect(page.locator("#dispatch-state")).to_have_text(
                    "running", timeout=10_000
                )
                # 5. The bar reaches 100% from the job's events, without a reload.
                await expect(bar).to_have_attribute("aria-valuenow", "100", timeout=300_000)
                await expect(bar).to_have_attribute("data-source", "events")
                await expect(job.locator(".status")).to_have_text("completed")
                assert await page.evaluate("window.notReloaded === true")
                assert worker.process.returncode is None
                # The worker's own rate, by the name its results carry (hostname:pid).
                rate_row = page.locator(
                    f'#worker-rates tr[data-worker="{socket.gethostname()}:{worker.process.pid}"]'
                )
                await expect(rate_row).to_be_visible(timeout=20_000)
                # Counts reach the table every 5 s (monitor/throughput.py), the page every 2 s.
                await expect(rate_row.locator("td").nth(1)).to_have_text("0.8", timeout=20_000)
                await expect(rate_row.locator("td").nth(2)).to_have_text("0")

            # The page grid, colour per status, and a thumbnail fetched with the key on hover.
            await job.locator("button.pages-toggle").click()
            cells = job.locator(".pages .cell")
            await expect(cells).to_have_count(4)
            await expect(job.locator(".pages .cell.done")).to_have_count(4)
            await cells.first.hover()
            thumb = page.locator("#thumb img")
            await expect(page.locator("#thumb")).to_be_visible()
            assert (await thumb.get_attribute("src") or "").startswith("blob:")
            await expect(page.locator("#chart rect.bar-rect")).to_have_count(60)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            await page.mouse.move(0, 0)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)

            # Readable on a phone: nothing overflows horizontally.
            await page.set_viewport_size({"width": 390, "height": 844})
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"the page is {overflow}px wider than a 390px phone"
            await page.set_viewport_size({"width": 1280, "height": 800})

            # 6. Delete: the job leaves the page and the gateway.
            await job.locator("button.delete").click()
            await expect(job).to_have_count(0)
            assert (await api.get(f"/jobs/{job_id}")).status_code == 404
            await expect(page.locator("#no-jobs")).to_be_visible()
            assert failed_requests == []
        except LogLineMissing as missing:
            pytest.fail(str(missing))
        finally:
            await browser.close()


async def test_run_logs_the_monitoring_page_url(tmp_path: Path, spawned: list[Gateway]) -> None:
    """`make run` (`ocr-gateway run`) prints where the monitoring page is, and it is there."""
    async with service_env(tmp_path) as (_, env):
        output = tmp_path / "gateway.log"
        gateway = Gateway(env, output)
        spawned.append(gateway)
        await gateway.start()
        logged = re.search(r"monitoring page: (http://\S+/admin/ui)", output.read_text())
        assert logged is not None, output.read_text()[-2000:]
        assert logged.group(1) == f"http://127.0.0.1:{gateway.port}/admin/ui"
        async with httpx.AsyncClient(timeout=30) as http:
            page = await http.get(logged.group(1))
        assert page.status_code == 200
        assert 'id="sign-in-form"' in page.text
