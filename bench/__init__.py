"""Benchmarks of ocr-gateway: `python -m bench.run` (make bench) and `python -m bench.ocr`
(make bench-ocr). `harness/` runs the service under test and writes the report; `sections/`
holds one module per measured section."""
