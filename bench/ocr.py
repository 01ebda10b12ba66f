"""`make bench-ocr`: the OCR engine matrix and the worker's overhead (`bench/ocr_engines.py`).

    python -m bench.ocr                       # every installed engine; writes RESULTS-ocr.md
    python -m bench.ocr --engine tesserocr --overhead-engine tesserocr
    python -m bench.ocr --sweep               # the earlier DPI and colour sweep through the
                                              # gateway (bench/sections/ocr.py, ~40 min)

`python bench/ocr.py` works too.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (`python bench/ocr.py`): import as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ocr_gateway.worker.telemetry import disable_telemetry

disable_telemetry()  # this process and the engine processes it starts load onnxruntime

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

from tests.support.gateway import delete_queues  # noqa: E402

from bench import ocr_engines  # noqa: E402
from bench.harness.common import BENCH  # noqa: E402
from bench.harness.report import machine  # noqa: E402
from bench.sections.ocr import LoadSampler, RunResult, report, run_once, versions  # noqa: E402
from ocr_gateway.core.settings import Settings, get_settings  # noqa: E402
from ocr_gateway.db.migrate import drop_database, ensure_database, upgrade  # noqa: E402
from ocr_gateway.worker.engine import ENGINES, available_engines  # noqa: E402

OUT = BENCH / "RESULTS-ocr.md"
SWEEP_OUT = BENCH / "RESULTS-ocr-dpi.md"


def say(line: str) -> None:
    print(line, flush=True)


async def engines_main(args: argparse.Namespace) -> None:
    """The engine matrix, then the overhead of the worker's own code, with the machine's load."""
    configured = get_settings()
    engines = args.engine or available_engines()
    if not engines:
        raise SystemExit("no OCR engine installed: make install")
    overhead_engine = args.overhead_engine or configured.ocr_engine
    load_before = os.getloadavg()
    sampler = LoadSampler()
    sampling = asyncio.create_task(sampler.run())
    began = time.monotonic()
    try:
        pages = await asyncio.to_thread(ocr_engines.render_pages)
        say(f"{len(pages)} pages; load average {load_before[0]:.2f} at the start")
        results = await asyncio.to_thread(ocr_engines.engine_matrix, engines, pages, say)
        psms = []
        if "tesserocr" in engines:
            psms = await asyncio.to_thread(ocr_engines.psm_sweep, pages, say)
        decode_s = await asyncio.to_thread(ocr_engines.decode_seconds, [p.png for p in pages])
        runs = await ocr_engines.overhead(configured, overhead_engine, pages, say)
    finally:
        sampling.cancel()
    load_after = os.getloadavg()
    header = [
        "# OCR engines and the worker's overhead (`make bench-ocr`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} "
        f"cores ({machine()['CPU']}); {versions()}.",
        f"Load average (1 min): {load_before[0]:.2f} at the start, {load_after[0]:.2f} at the "
        f"end, {sampler.summary()} sampled every 5 s; this machine is shared, so wall times "
        "move with others' work and CPU times much less. The run took "
        f"{(time.monotonic() - began) / 60:.1f} min.",
    ]
    text = ocr_engines.report(results, psms, runs, overhead_engine, pages, decode_s, header)
    await asyncio.to_thread(args.out.write_text, text)
    say(text)
    say(f"wrote {args.out}")


async def main(args: argparse.Namespace) -> None:
    if not args.sweep:
        await engines_main(args)
        return
    configured = get_settings()
    run_id = uuid.uuid4().hex[:8]
    engines = args.engine or available_engines()
    if not engines:
        raise SystemExit("no OCR engine installed: pip install -e '.[ocr]'")
    dpis = args.dpi or sorted({configured.render_dpi, 150, 200, 300})
    colours = [True, False] if args.colour == "both" else [args.colour == "gray"]
    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as tmp:
        base = Settings(
            database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/ocr_gateway_bench_{run_id}",
            rabbitmq_url=configured.rabbitmq_url,
            pages_queue=f"ocr.pages.bench-{run_id}",
            results_queue=f"ocr.results.bench-{run_id}",
            files_dir=Path(tmp) / "files",
            temp_dir=Path(tmp) / "temp",
            logs_dir=Path(tmp) / "logs",
            log_level="WARNING",
            render_workers=2,
            dispatch_poll_s=0.2,
            _env_file=None,
        )
        await ensure_database(base)
        await asyncio.to_thread(upgrade, base)
        results: list[RunResult] = []
        sampler = LoadSampler()
        sampling = asyncio.create_task(sampler.run())
        began = time.monotonic()
        try:
            for engine in engines:
                for dpi in dpis:
                    for grayscale in colours:
                        result = await run_once(
                            base,
                            engine=engine,
                            dpi=dpi,
                            grayscale=grayscale,
                            processes=args.processes,
                        )
                        results.append(result)
                        print(
                            f"{engine:10} {dpi:4} {'gray' if grayscale else 'RGB ':4} "
                            f"pages={result.pages} CER={result.cer:.2%} WER={result.wer:.2%} "
                            f"pages/s/process={result.pages_per_s_per_process:.3f}",
                            flush=True,
                        )
        finally:
            sampling.cancel()
            await delete_queues(base)
            await drop_database(base)
    text = await asyncio.to_thread(report, results, sampler.summary(), time.monotonic() - began)
    await asyncio.to_thread(args.out.write_text, text)
    print(f"wrote {args.out}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engine", action="append", choices=ENGINES, help="engine (default: all installed)"
    )
    parser.add_argument(
        "--dpi", action="append", type=int, help="DPI (default: configured, 150, 200, 300)"
    )
    parser.add_argument("--colour", choices=("both", "gray", "rgb"), default="both")
    parser.add_argument("--processes", type=int, default=1, help="OCR processes in the worker")
    parser.add_argument("--sweep", action="store_true", help="the DPI and colour sweep")
    parser.add_argument("--overhead-engine", choices=ENGINES, help="default: the configured one")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.out is None:
        args.out = SWEEP_OUT if args.sweep else OUT
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
