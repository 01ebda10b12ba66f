"""`make bench-ocr`: OCR quality and speed through the real queue path, per engine, DPI and colour.

    python -m bench.ocr                       # every installed engine, 4 DPIs, gray and RGB
    python -m bench.ocr --engine rapidocr --dpi 200 --colour gray

What is measured and how is told in `bench/sections/ocr.py`. Writes a Markdown table to
bench/RESULTS-ocr.md. `python bench/ocr.py` works too.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (`python bench/ocr.py`): import as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import tempfile
import time
import uuid

from tests.support.gateway import delete_queues

from bench.harness.common import BENCH
from bench.sections.ocr import LoadSampler, RunResult, report, run_once
from ocr_gateway.core.settings import Settings, get_settings
from ocr_gateway.db.migrate import drop_database, ensure_database, upgrade
from ocr_gateway.worker.engine import ENGINES, available_engines

OUT = BENCH / "RESULTS-ocr.md"


async def main(args: argparse.Namespace) -> None:
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
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
