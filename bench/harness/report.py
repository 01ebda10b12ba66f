"""The machine, the versions measured, and the Markdown report of a run."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path

import psutil

from bench.harness.common import REPO
from bench.harness.context import Context
from bench.harness.plan import Row
from ocr_gateway.rendering.mupdf import pymupdf


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "CPU": model,
        "nproc": str(os.cpu_count()),
        "RAM": f"{psutil.virtual_memory().total / 1024**3:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
    }


def source_state() -> str:
    """The commit measured, and whether src/ differs from it (read-only git calls)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    if not dirty:
        return f"commit {commit}"
    return f"commit {commit} with {len(dirty)} changed or new path(s) under src/ not committed"


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


async def versions(ctx: Context) -> dict[str, str]:
    result = {
        "ocr-gateway": f"{package_version('ocr-gateway')}, {await asyncio.to_thread(source_state)}",
        "Python": platform.python_version(),
        "PyMuPDF": f"{pymupdf.__version__} (MuPDF {getattr(pymupdf, 'mupdf_version', '?')})",
        "aio-pika": package_version("aio-pika"),
        "aiormq": package_version("aiormq"),
        "pika": package_version("pika"),
        "uvicorn": package_version("uvicorn"),
        "FastAPI": package_version("fastapi"),
        "PostgreSQL": str(await ctx.conn.fetchval("SHOW server_version")),
    }
    rabbit = "unknown"
    transport = getattr(ctx.amqp, "transport", None)
    props = getattr(transport, "server_properties", None) or getattr(
        getattr(transport, "connection", None), "server_properties", None
    )
    if isinstance(props, dict):
        version = props.get("version", rabbit)
        rabbit = version.decode() if isinstance(version, bytes) else str(version)
    result["RabbitMQ"] = rabbit
    if ctx.pdftoppm:
        proc = await asyncio.create_subprocess_exec(
            ctx.pdftoppm, "-v", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        result["poppler (pdftoppm)"] = out.decode(errors="replace").splitlines()[0].split()[-1]
    else:
        result["poppler (pdftoppm)"] = "not installed"
    spy = ctx.bin / "py-spy"
    result["py-spy"] = package_version("py-spy") if spy.exists() else "not installed"
    return result


def table(rows: Iterable[Row], runs: dict[int, int]) -> str:
    lines = [
        "| id | measure | runs | min | median | max | target | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        values = row.values
        lo = min(values) if values else None
        hi = max(values) if values else None
        count = len(values) if values else runs.get(row.section, 0)
        lines.append(
            f"| {row.key} | {row.measure} | {count} | {row.fmt(lo)} | {row.fmt(row.median)} |"
            f" {row.fmt(hi)} | {row.target_text} | {row.met_text} |"
        )
    return "\n".join(lines)


def report(
    ctx: Context,
    rows: dict[str, Row],
    header: dict[str, dict[str, str]],
    sections: dict[int, str],
    profiles: list[tuple[str, str]],
    started: dt.datetime,
    elapsed: float,
    command: str,
) -> str:
    plan = ctx.plan
    runs = {1: plan.runs, 2: plan.publish_runs, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1}
    out = [
        "# ocr-gateway benchmark results",
        "",
        f"`{command}`, {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} minutes"
        + (" (quick smoke run: a few pages, numbers not meaningful)" if plan.quick else ""),
        "",
        "Every figure was measured in this one run, the service side by side with its limit or",
        "peer; `runs` is how many times each pair was measured and min / median / max are over",
        "those runs. A target is judged on the median. Latency rows give the percentile over all",
        "the calls of the run.",
        "",
        table(rows.values(), runs),
        "",
        "## Machine and versions",
        "",
    ]
    out += [f"- {k}: {v}" for k, v in header["machine"].items()]
    out += [f"- {k}: {v}" for k, v in header["versions"].items()]
    out += [
        "",
        "## What was compared",
        "",
    ]
    for row in rows.values():
        text = f"- **{row.key}** {row.compared}."
        if row.detail:
            text += f" {row.detail}."
        out.append(text)
    out += ["", "## Load on the machine during each section", ""]
    out += [f"- section {num}: {text}" for num, text in sorted(sections.items())]
    missed = [row for row in rows.values() if row.met is False]
    errors = [row for row in rows.values() if row.status and row.status.startswith("error")]
    out += ["", "## Targets missed", ""]
    if not missed and not errors:
        out.append("None.")
    for row in missed:
        out.append(
            f"- **{row.key}** {row.measure}: median {row.fmt(row.median)}, target"
            f" {row.target_text}."
        )
    for row in errors:
        out.append(f"- **{row.key}** could not be measured: {row.status}.")
    if profiles:
        out += ["", "## Profiles", ""]
        out.append(
            "py-spy (`record --nonblocking --rate 100`, collapsed stacks summarized), one extra"
            " run each, not counted in the table."
        )
        for label, summary in profiles:
            out += ["", f"### {label}", "", "```text", summary, "```"]
    out += [
        "",
        "## Method",
        "",
        "- Service: `ocr-gateway serve` on 127.0.0.1 and `ocr-gateway dispatch` beside it,"
        " database `ocr_gateway_bench_<id>`, queues"
        f" `ocr.pages.bench-<id>`, render settings passed explicitly: {ctx.workers} render"
        f" workers (the default: one per CPU), {ctx.dpi} dpi, grayscale {ctx.gray}; the other"
        " settings are the defaults except where a section says otherwise.",
        "- Render: the clock runs from the upload request until the job's row shows every page"
        " rendered (polled every 50 ms in PostgreSQL, the counter `GET /admin/job/{id}` reads),"
        " then the API answer and the PNG files are checked. The bare loop is a warm spawn pool"
        f" of {ctx.workers} processes, one open Document each, chunks of {ctx.chunk} pages,"
        " `get_pixmap` + `tobytes('png')` + write; pdftoppm renders a sample of pages (blocks"
        " spread over the document) because it is slow. The order of the three rotates per run.",
        "- Publish: pages are seeded as rendered jobs, PNGs hard-linked to the sample's renders;"
        " the high-water mark is set above the page count so nothing throttles. The clock runs"
        " from POST /admin/start until every page is `queued` in the DB (polled every 50 ms). The"
        " aio-pika and pika loops publish the same message bodies (the sample's pages in the"
        " pages-queue format) to a queue declared like the pages queue; connection set-up is"
        " not timed.",
        "- Upload: GeoTopo from concurrent httpx clients while the generated PDF renders; each"
        " new job is deleted once answered, so the render load stays one job.",
        "- Admin and memory: one start of every page with GET /admin/jobs every 0.1 s, then"
        " stop/start pairs, each sent once the previous start had moved a page (the wait is row"
        " 4d); RSS sampled every 0.1 s throughout.",
        "- Scale: the pages queue is held at its high-water mark so that no page moves while"
        " /admin/start and /admin/jobs are called; the small DB is 1% of the big one.",
        "- Flow control: the service's default high-water mark"
        + (f" (quick run: {plan.flow_high_water})" if plan.flow_high_water else "")
        + f", a consumer acking {plan.flow_rate:.0f} msg/s, queue depth sampled every 0.2 s.",
    ]
    return "\n".join(out) + "\n"
