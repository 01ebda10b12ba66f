"""The worker sends nothing anywhere but the broker: onnxruntime's usage telemetry is off.

onnxruntime (under both RapidOCR engines) collects usage data by default on Linux: it writes a
device id and a database under `~/.cache/Microsoft/DeveloperTools/` and looks up an event
endpoint. Only the environment variable, set before onnxruntime is imported, stops both
(`disable_telemetry_events()` does not). `ocr_gateway.worker.engine` sets it when imported, and
everything that loads an engine imports that module first: the worker, its OCR processes (which
inherit the environment and import it again), the bench and the tables bench.
"""

from __future__ import annotations

import os

# The one definition: the variable and the value that turn onnxruntime's telemetry off.
TELEMETRY_OFF = {"ORT_DISABLE_TELEMETRY": "1"}


def disable_telemetry() -> None:
    """Set the variables in this process (and so in every process it starts from now on)."""
    os.environ.update(TELEMETRY_OFF)
