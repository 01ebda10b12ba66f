"""The webhook sender: every API process runs one, and they share the outbox.

A sender claims due deliveries with `FOR UPDATE SKIP LOCKED` and pushes each one a lease
ahead in the same statement, so two processes never hold the same delivery, and one killed
mid-send leaves it due again when the lease ends. It sends up to `WEBHOOK_CONCURRENCY` at once
over one HTTP client, each signed at its attempt with the tenant's secret as it is then, to the
address the SSRF guard has just checked. It wakes on the NOTIFY of new deliveries, when a retry
falls due, when a send ends, and every `POLL_S` in case a NOTIFY was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from ocr_gateway.core.errors import InvalidField, MalformedRequest, NotFound
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.listen import listen_forever
from ocr_gateway.db.models import DeliveryStatus, WebhookDelivery
from ocr_gateway.metrics import registry as metrics
from ocr_gateway.webhooks import guard, signing
from ocr_gateway.webhooks import repository as repo
from ocr_gateway.webhooks.retry import Verdict, judge, parse_retry_after, retry_delay

log = logging.getLogger(__name__)

# The longest a sender sleeps without a NOTIFY: what a missed one can cost.
POLL_S = 2.0
RECONNECT_S = 1.0
# Due deliveries that another sender is claiming this instant are not a reason to spin.
MIN_WAIT_S = 0.01
CLAIM_BATCH_DIVISOR = 4
# A claim lasts the attempt's whole time (resolution and request under WEBHOOK_TIMEOUT_S)
# plus this, to record the outcome.
LEASE_MARGIN_S = 10.0
# At most this much of a receiver's answer is read; of that, this much kept as `last_error`.
MAX_RESPONSE_BYTES = 64 * 1024
ERROR_SNIPPET_CHARS = 200
USER_AGENT = "ocr-gateway-webhooks/1"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt got: an answer's status code, or none and why."""

    status_code: int | None
    error: str | None = None
    retry_after_s: float | None = None
    refused: bool = False  # the guard refused the URL: no retry will change that


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    items: Sequence[WebhookDelivery]
    next_cursor: str | None


class WebhookSender:
    def __init__(self, settings: Settings, sessions: SessionFactory) -> None:
        self.settings = settings
        self.sessions = sessions
        self._wake = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], repo.Claimed] = {}

    @property
    def lease_s(self) -> float:
        return self.settings.webhook_timeout_s + LEASE_MARGIN_S

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Send due deliveries until cancelled; attempts cut short are given back."""
        limits = httpx.Limits(
            max_connections=self.settings.webhook_concurrency,
            max_keepalive_connections=self.settings.webhook_concurrency,
        )
        async with (
            httpx.AsyncClient(
                follow_redirects=False,
                timeout=self.settings.webhook_timeout_s,
                limits=limits,
                headers={"user-agent": USER_AGENT},
                trust_env=False,
            ) as http,
            asyncio.TaskGroup() as group,
        ):
            group.create_task(self._listen())
            try:
                await self._send_due(http, group)
            finally:
                await self._give_back_in_flight()

    async def _send_due(self, http: httpx.AsyncClient, group: asyncio.TaskGroup) -> None:
        concurrency = self.settings.webhook_concurrency
        # Under load, claim when a quarter of the slots are free rather than at every send
        # that ends: one claim per several deliveries.
        batch = max(1, concurrency // CLAIM_BATCH_DIVISOR)
        while True:
            self._wake.clear()
            free = concurrency - len(self._in_flight)
            wait_s = POLL_S  # with no free slot: until a send ends
            if free >= batch:
                try:
                    claimed = await self._claim(free)
                    if len(claimed) < free:
                        wait_s = await self._seconds_to_next_due()
                except Exception as exc:
                    log.warning("webhook sender cannot read the outbox: %s", exc)
                    claimed, wait_s = [], RECONNECT_S
                for delivery in claimed:
                    task = group.create_task(self._deliver(http, delivery))
                    self._in_flight[task] = delivery
                    task.add_done_callback(self._sent)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(MIN_WAIT_S, wait_s)):
                    await self._wake.wait()

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._wake.set()

    async def _claim(self, limit: int) -> list[repo.Claimed]:
        async with self.sessions.begin() as session:
            return await repo.claim_due(session, limit=limit, lease_s=self.lease_s)

    async def _seconds_to_next_due(self) -> float:
        async with self.sessions() as session:
            due_in = await repo.seconds_to_next_due(session)
        return POLL_S if due_in is None else min(POLL_S, max(0.0, due_in))

    async def _give_back_in_flight(self) -> None:
        """The process is stopping: sends still under way are cancelled by the task group;
        their deliveries are due again now rather than when their lease ends."""
        claims = list(self._in_flight.values())
        self._in_flight.clear()
        if not claims:
            return
        try:
            async with asyncio.timeout(2.0), self.sessions.begin() as session:
                await repo.give_back(session, claims)
        except Exception as exc:
            log.warning("could not give back %d webhook deliveries: %s", len(claims), exc)

    # ------------------------------------------------------------ one delivery

    async def _deliver(self, http: httpx.AsyncClient, claimed: repo.Claimed) -> None:
        if claimed.secret is None:
            attempt = Attempt(None, "the tenant no longer exists", refused=True)
        else:
            attempt = await self.attempt(
                http, claimed.url, claimed.webhook_id, claimed.payload, claimed.secret
            )
        await self._record(claimed, attempt)

    async def attempt(
        self,
        http: httpx.AsyncClient,
        url: str,
        webhook_id: str,
        payload: dict[str, object],
        secret: str,
    ) -> Attempt:
        """One POST of a delivery: guard, sign, send, read at most 64 KiB of the answer, all
        within WEBHOOK_TIMEOUT_S."""
        body = signing.encode_body(payload)
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                target = await guard.check_target(url, self.settings)
                headers = signing.signed_headers(secret, webhook_id, int(time.time()), body)
                headers["host"] = target.host_header
                if target.tls_hostname is not None:
                    # The pool is keyed by address, not name: a TLS connection verified for
                    # one host name is never reused for another on the same address.
                    headers["connection"] = "close"
                request = http.build_request(
                    "POST",
                    target.url,
                    content=body,
                    headers=headers,
                    extensions=target.extensions,
                )
                response = await http.send(request, stream=True)
                try:
                    answer = await _read_capped(response, MAX_RESPONSE_BYTES)
                finally:
                    await response.aclose()
        except guard.CallbackUnresolved as exc:
            return Attempt(None, exc.detail)
        except InvalidField as exc:
            return Attempt(None, exc.detail, refused=True)
        except TimeoutError:
            return Attempt(None, f"no answer within {self.settings.webhook_timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Attempt(None, f"{type(exc).__name__}: {exc}".rstrip(": "))
        code = response.status_code
        retry_after = None
        if code in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
        error = None
        if 300 <= code < 400:
            error = f"HTTP {code}: redirects are not followed"
        elif judge(code) is not Verdict.DELIVERED:
            text = answer.decode("utf-8", "replace")[:ERROR_SNIPPET_CHARS]
            error = f"HTTP {code}" + (f": {text}" if text else "")
        return Attempt(code, error, retry_after)

    async def _record(self, claimed: repo.Claimed, attempt: Attempt) -> None:
        verdict = Verdict.GIVE_UP if attempt.refused else judge(attempt.status_code)
        retry_in_s = None
        if verdict is Verdict.DELIVERED:
            status = DeliveryStatus.DELIVERED
        elif verdict is Verdict.RETRY and claimed.attempt < self.settings.webhook_max_attempts:
            status = DeliveryStatus.PENDING
            retry_in_s = retry_delay(
                claimed.attempt,
                self.settings.webhook_retry_base_s,
                retry_after_s=attempt.retry_after_s,
            )
        else:
            status = DeliveryStatus.FAILED
        try:
            async with self.sessions.begin() as session:
                await repo.record_outcome(
                    session,
                    claimed,
                    status=status,
                    retry_in_s=retry_in_s,
                    status_code=attempt.status_code,
                    error=attempt.error,
                )
        except Exception as exc:
            # The lease ends and the delivery is sent again: at least once, never lost.
            log.warning("webhook outcome not recorded id=%d: %s", claimed.id, exc)
            return
        metrics.WEBHOOK_DELIVERIES.labels(
            outcome="retry" if retry_in_s is not None else status.value
        ).inc()
        log.log(
            logging.INFO if status is not DeliveryStatus.FAILED else logging.WARNING,
            "webhook %s id=%d webhook_id=%s attempt=%d status_code=%s%s",
            status.value if retry_in_s is None else f"retry in {retry_in_s:.1f}s",
            claimed.id,
            claimed.webhook_id,
            claimed.attempt,
            attempt.status_code,
            f" error={attempt.error[:80]!r}" if attempt.error else "",
        )

    # ------------------------------------------------------------ waking up

    async def _listen(self) -> None:
        """LISTEN for new deliveries; a NOTIFY missed while disconnected is made up for."""
        await listen_forever(
            self.settings.sync_database_url,
            repo.WEBHOOKS_CHANNEL,
            self._on_notify,
            ping_s=POLL_S * 5,
            what="webhook listener",
            on_connected=self._wake.set,
        )

    def _on_notify(self, _payload: str) -> None:
        self._wake.set()

    # ------------------------------------------------------------ the operator's view

    async def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None,
        tenant: str | None,
        job_id: uuid.UUID | None,
        limit: int,
        cursor: str | None,
    ) -> DeliveryPage:
        """Deliveries newest first; `next_cursor` continues after the last one."""
        before_id = _decode_cursor(cursor) if cursor else None
        async with self.sessions() as session:
            items = await repo.list_deliveries(
                session,
                status=status,
                tenant=tenant,
                job_id=job_id,
                before_id=before_id,
                limit=limit + 1,
            )
        more = len(items) > limit
        items = items[:limit]
        return DeliveryPage(items, str(items[-1].id) if more and items else None)

    async def redeliver(self, delivery_id: int) -> WebhookDelivery:
        """Send the delivery again, from a first attempt, now, whatever its status."""
        async with self.sessions.begin() as session:
            delivery = await repo.redeliver(session, delivery_id)
        if delivery is None:
            raise NotFound(f"webhook delivery {delivery_id} not found")
        self._wake.set()
        return delivery


def _decode_cursor(cursor: str) -> int:
    if not cursor.isdigit() or len(cursor) > 19:
        raise MalformedRequest("the cursor is not one this service issued")
    return int(cursor)


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of the answer's body; the rest is never read."""
    kept = bytearray()
    async for chunk in response.aiter_raw():
        kept += chunk[: limit - len(kept)]
        if len(kept) >= limit:
            break
    return bytes(kept)
