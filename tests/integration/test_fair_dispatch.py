"""Fair dispatch: tenants' pending pages are published round-robin in proportion to their
weights, each tenant's oldest first, so a small job is not queued behind another's backlog.

The claim itself is tried in a transaction that is rolled back (the app's dispatcher never
sees its start); the fairness of publishing is measured through the app's own dispatcher and
the broker's queue order, which is the order pages were published in.
"""

from __future__ import annotations

import uuid
from collections import Counter

import orjson
from aio_pika.abc import AbstractChannel
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.db.models import PageStatus
from ocr_gateway.dispatch import repository as repo
from ocr_gateway.dispatch.bodies import PREPARE_BATCH
from ocr_gateway.dispatch.flow import claim_ahead
from ocr_gateway.tenants import repository as tenants_repo
from tests.support.gateway import drain, seed_pages
from tests.support.waiting import wait_until

BACKLOG_JOBS, BACKLOG_PAGES = 10, 500  # tenant A: 5,000 pages
# B's 3 pages must go out among the first few dozen published after it was submitted: behind
# at most the pages the dispatcher had claimed ahead (64 at 32 publishers), and interleaved
# with as many of A's in the next claim.
FEW_DOZEN = claim_ahead(32, PREPARE_BATCH) + 2 * 3


async def set_weight(services: Components, tenant: str, weight: int) -> None:
    async with services.sessions.begin() as session:
        await tenants_repo.ensure_tenant(session, tenant)
        await session.execute(
            text("UPDATE tenants SET weight = :w WHERE name = :t"), {"w": weight, "t": tenant}
        )


async def claim_rolled_back(
    services: Components, limit: int, *, job_id: uuid.UUID | None = None
) -> list[repo.ClaimedPage]:
    """What one claim would take under a start (of every page, or of one job), undone after."""
    async with services.sessions() as session:
        await repo.add_dispatch_request(session, job_id)
        claimed = await repo.claim_pages(session, limit=limit, lease_s=60)
        await session.rollback()
    return claimed


async def test_a_claim_interleaves_tenants_in_proportion_to_their_weights(
    services: Components,
) -> None:
    target = (services.storage, services.sessions)
    await seed_pages(target, 2, 100, tenant="heavy")
    await seed_pages(target, 1, 100, tenant="light")
    await set_weight(services, "heavy", 2)

    claimed = await claim_rolled_back(services, 60)

    assert Counter(page.tenant for page in claimed) == {"heavy": 40, "light": 20}
    assert "".join("H" if p.tenant == "heavy" else "L" for p in claimed[:9]) == "HLHHLHHLH"
    for tenant in ("heavy", "light"):
        ids = [page.id for page in claimed if page.tenant == tenant]
        assert ids == sorted(ids), "each tenant's oldest pages first"


async def test_equal_weights_alternate_and_a_small_tenant_leaves_its_share_to_others(
    services: Components,
) -> None:
    target = (services.storage, services.sessions)
    await seed_pages(target, 1, 50, tenant="A")
    (small,) = await seed_pages(target, 1, 3, tenant="B")

    claimed = await claim_rolled_back(services, 20)

    tenants = "".join(page.tenant for page in claimed)
    assert tenants == "ABABAB" + "A" * 7, "B takes 3 of its 10, A its 10"
    assert [p.page_number for p in claimed if p.job_id == small] == [1, 2, 3]


async def test_a_fair_claim_keeps_the_starts_scope_and_skips_cancelled_jobs(
    services: Components,
) -> None:
    target = (services.storage, services.sessions)
    (started, other) = await seed_pages(target, 2, 5, tenant="A")
    (cancelled,) = await seed_pages(target, 1, 5, tenant="B")
    async with services.sessions.begin() as session:
        await session.execute(
            text("UPDATE jobs SET status = 'cancelled' WHERE job_id = :j"), {"j": cancelled}
        )

    only_one_job = await claim_rolled_back(services, 50, job_id=started)
    every_page = await claim_rolled_back(services, 50)

    assert {page.job_id for page in only_one_job} == {started}
    assert len(only_one_job) == 5
    assert {page.job_id for page in every_page} == {started, other}


async def test_a_small_job_is_published_among_the_next_few_dozen_despite_a_backlog(
    services: Components, channel: AbstractChannel
) -> None:
    """Tenant A has 5,000 pages publishing; tenant B then submits a 3-page job. The figure
    is each of B's pages' position among the pages published after B's job was recorded."""
    dispatcher = services.dispatcher
    assert dispatcher is not None
    assert services.settings.publisher_concurrency == 32
    target = (services.storage, services.sessions)
    await seed_pages(target, BACKLOG_JOBS, BACKLOG_PAGES, tenant="A")
    published_before = dispatcher.published
    await services.control.start_all()

    async def backlog_publishing() -> bool:
        return dispatcher.published - published_before >= 300

    await wait_until(backlog_publishing, timeout=60)

    (small,) = await seed_pages(target, 1, 3, tenant="B")
    published_at_submit = dispatcher.published - published_before

    async def small_job_queued() -> bool:
        async with services.sessions() as session:
            queued = await session.scalar(
                text("SELECT count(*) FROM pages WHERE job_id = :j AND status = :s"),
                {"j": small, "s": PageStatus.QUEUED.value},
            )
        return bool(queued == 3)

    await wait_until(small_job_queued, timeout=60)
    await services.control.stop_and_drain()
    order = [
        orjson.loads(body)["job_id"] for body in await drain(channel, services.settings.pages_queue)
    ]

    positions = [i + 1 - published_at_submit for i, job in enumerate(order) if job == str(small)]
    print(
        f"fair dispatch: {published_at_submit} of A's pages published before B's job;"
        f" B's pages were published {positions} among those after it"
    )
    assert len(positions) == 3
    assert max(positions) <= FEW_DOZEN, positions
    assert len(order) < BACKLOG_JOBS * BACKLOG_PAGES, "A's backlog was still publishing"
