"""Playing the OCR worker: results published to the results queue as a worker would."""

from __future__ import annotations

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel


async def send_result(channel: AbstractChannel, queue: str, payload: object) -> None:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    await channel.default_exchange.publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=queue,
    )


def done(job_id: str, page_number: int, text: str = "") -> dict[str, object]:
    return {
        "job_id": job_id,
        "page_number": page_number,
        "status": "done",
        "text": text or f"text of page {page_number}",
        "boxes": [{"bbox": [10, 20, 110, 40], "text": text or "line", "confidence": 0.9}],
    }
