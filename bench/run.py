"""Benchmarks of ocr-gateway: the running service against its limits and peers, side by side.

`make bench` runs this module (`python -m bench.run`) with the project's virtualenv. The real
service (`ocr-gateway serve` on a free localhost port, and `ocr-gateway dispatch` beside it) runs
as subprocesses with its own throw-away database (`ocr_gateway_bench_<id>`, created and migrated
here), its own queues and its files, temp files and logs under `bench/out/<id>/`; all of it is
removed at the end. Each measurement is compared in the same run with a bare loop (the limit) or
a common alternative (the peer), so every figure is a ratio, or a latency with its target. The
table gives min / median / max over the runs; a target is judged on the median. When a target is
missed, one extra run is profiled with py-spy and the profile goes into the results file.

    python -m bench.run               # the full bench, 15-20 minutes on 2 cores (7 for 11)
    python -m bench.run --quick       # a smoke run on a few pages, about a minute
    python -m bench.run --only 2,7    # some sections only (results go to bench/out/)

This module parses the command line and runs the sections in order; `bench/harness/` holds what
they share and `bench/sections/` one module per section. `python bench/run.py` works too.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (`python bench/run.py`): import as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import datetime as dt
import os
import re
import time
import traceback
from collections.abc import Awaitable, Callable

from bench.harness.common import BENCH, UNBOUNDED_HIGH_WATER, log
from bench.harness.context import Context
from bench.harness.plan import make_plan
from bench.harness.profiles import CpuWatch, Profiler
from bench.harness.report import machine, report, table, versions
from bench.harness.rows import SECTION_ROWS, make_rows
from bench.harness.service import Service
from bench.sections import (
    admin,
    convert,
    events,
    exports,
    flow,
    message_images,
    metrics,
    publish,
    regions,
    render,
    scale,
    storage,
    tables,
    tasks,
    tenants,
    text_layer,
    thumbnails,
    upload,
)


async def main_async(args: argparse.Namespace) -> int:
    plan = make_plan(args.quick, args.runs)
    wanted = {int(s) for s in args.only.split(",")} if args.only else set(SECTION_ROWS)
    if 5 in wanted:
        wanted.add(4)
    ctx = Context(plan, args.keep)
    rows = make_rows(plan, ctx.workers, ctx.dpi, ctx.gray, ctx.niceness)
    rows.update(exports.export_rows(exports.export_pages(plan.quick)))
    rows.update({row.key: row for row in tenants.tenant_rows(plan.webhooks, plan.tenant_backlog)})
    rows.update({row.key: row for row in tasks.task_rows(plan)})
    rows.update({row.key: row for row in thumbnails.thumbnail_rows(plan)})
    rows.update({row.key: row for row in text_layer.text_layer_rows(plan)})
    rows.update({row.key: row for row in tables.table_rows(plan)})
    rows.update({row.key: row for row in convert.convert_rows(plan)})
    rows.update({row.key: row for row in metrics.metrics_rows(plan)})
    rows.update({row.key: row for row in message_images.message_image_rows(plan)})
    rows.update({row.key: row for row in regions.region_rows(plan)})
    rows.update({row.key: row for row in storage.storage_rows(plan)})
    prof = Profiler(ctx, "never" if plan.quick and args.profile == "auto" else args.profile)
    started_at = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    section_notes: dict[int, str] = {}
    header: dict[str, dict[str, str]] = {"machine": machine(), "versions": {}}
    failures = 0
    for num, keys in SECTION_ROWS.items():
        if num not in wanted:
            for key in keys:
                rows[key].status = "not run (--only)"

    async def guarded(num: int, svc: Service | None, work: Callable[[], Awaitable[None]]) -> None:
        nonlocal failures
        if num not in wanted:
            return
        watch = CpuWatch()
        watch.begin()
        log(f"section {num} starts")
        try:
            await work()
        except Exception as exc:
            failures += 1
            traceback.print_exc()
            for key in SECTION_ROWS[num]:
                if not rows[key].values:
                    rows[key].status = f"error: {exc}"[:200]
        pids = {os.getpid()} | (svc.pids if svc is not None else set())
        section_notes[num] = watch.end(pids)
        log(f"section {num} done: {section_notes[num]}")

    try:
        await ctx.setup()
        header["versions"] = await versions(ctx)
        if wanted & {1, 2, 3, 4}:
            open_svc = Service(
                ctx, "unthrottled", {"OCR_GATEWAY_QUEUE_HIGH_WATER": str(UNBOUNDED_HIGH_WATER)}
            )
            await open_svc.start()
            try:
                await guarded(1, open_svc, lambda: render.run(ctx, open_svc, rows, prof))
                await guarded(2, open_svc, lambda: publish.run(ctx, open_svc, rows, prof))
                await guarded(4, open_svc, lambda: admin.run(ctx, open_svc, rows, prof))
                await guarded(3, open_svc, lambda: upload.run(ctx, open_svc, rows, prof))
            finally:
                await open_svc.stop()
        if wanted & {6, 7}:
            high_water = plan.flow_high_water or ctx.default_high_water
            overrides = {}
            if plan.flow_high_water:
                overrides["OCR_GATEWAY_QUEUE_HIGH_WATER"] = str(plan.flow_high_water)
            default_svc = Service(ctx, "default", overrides)
            await default_svc.start()
            try:
                await guarded(
                    7, default_svc, lambda: flow.run(ctx, default_svc, rows, prof, high_water)
                )
                await guarded(
                    6, default_svc, lambda: scale.run(ctx, default_svc, rows, prof, high_water)
                )
            finally:
                await default_svc.stop()
        if wanted & {8, 9}:
            client_svc = Service(ctx, "clients", {})
            await client_svc.start()
            try:
                await guarded(8, client_svc, lambda: events.run(ctx, client_svc, rows, prof))
                await guarded(9, client_svc, lambda: exports.run(ctx, client_svc, rows))
            finally:
                await client_svc.stop()
        if 10 in wanted:
            await guarded(
                10,
                None,  # the section starts the services it compares
                lambda: tenants.run(ctx, rows, plan.webhooks, plan.tenant_backlog),
            )
        if 11 in wanted:
            # The section starts its service, OCR workers and the Celery anchor itself.
            await guarded(11, None, lambda: tasks.run(ctx, rows))
        if 12 in wanted:
            # The section starts its own service: uploads to /images, and the bare loop.
            await guarded(12, None, lambda: thumbnails.run(ctx, rows))
        if 13 in wanted:
            # The section starts its service (automatic dispatch) and an OCR worker itself.
            await guarded(13, None, lambda: text_layer.run(ctx, rows))
        if 14 in wanted:
            # Tables on one worker process: no service, the pool functions themselves.
            await guarded(14, None, lambda: tables.run(rows, plan))
        if 15 in wanted:
            # The batch merge and the workbook in one process: the pool functions themselves.
            await guarded(15, None, lambda: convert.run(rows, plan))
        if 16 in wanted:
            # The section starts its own service, with the dispatcher's metrics port.
            await guarded(16, None, lambda: metrics.run(ctx, rows))
        if 17 in wanted:
            # The section starts its services itself: inline and url, alternating.
            await guarded(17, None, lambda: message_images.run(ctx, rows))
        if 18 in wanted:
            # Recognise versus full OCR in one OCR process: the pool functions themselves.
            await guarded(18, None, lambda: regions.run(rows, plan))
        if 19 in wanted:
            # The section starts its services and its S3 server: local and s3, alternating.
            await guarded(19, None, lambda: storage.run(ctx, rows))
    except Exception as exc:
        failures += 1
        traceback.print_exc()
        for row in rows.values():
            if not row.values and not row.status:
                row.status = f"error: {exc}"[:200]
    finally:
        await ctx.cleanup()

    elapsed = time.perf_counter() - started
    program = "python -m bench.run" if __package__ else "python bench/run.py"
    command = program + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    text = report(
        ctx, rows, header, section_notes, prof.reports, started_at, elapsed, command.strip()
    )
    runs = {1: plan.runs, 2: plan.publish_runs}
    print()
    print(table(rows.values(), runs))
    print()
    results = Path(args.results) if args.results else default_results(args)
    await asyncio.to_thread(write_text, results, text)
    log(f"results written to {results} ({elapsed / 60:.1f} minutes)")
    return 1 if failures else 0


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def default_results(args: argparse.Namespace) -> Path:
    if args.quick:
        return BENCH / "out" / "RESULTS-quick.md"
    if args.only or args.runs:
        return BENCH / "out" / "RESULTS-partial.md"
    return BENCH / "RESULTS.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run on a few pages")
    parser.add_argument("--runs", type=int, help="runs per pair in sections 1 and 2 (default 3, 5)")
    parser.add_argument("--only", help="comma-separated sections, e.g. 1,2 (5 runs with 4)")
    parser.add_argument(
        "--results", help="where to write the results (default bench/RESULTS.md for a full run)"
    )
    parser.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="py-spy profile of an extra run: when a target is missed (auto), always, never",
    )
    parser.add_argument("--keep", action="store_true", help="keep bench/out/<id> (logs, profiles)")
    args = parser.parse_args(argv)
    if args.only and not (
        re.fullmatch(r"\d+(,\d+)*", args.only)
        and {int(s) for s in args.only.split(",")} <= set(SECTION_ROWS) | {5}
    ):
        parser.error(f"--only takes section numbers 1-{max(SECTION_ROWS)}, comma-separated")
    if args.runs is not None and not 1 <= args.runs <= 20:
        parser.error("--runs must be between 1 and 20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
