"""One module per section of the bench: render, publish, upload, admin (latency and memory),
scale, flow (control) and ocr. Each takes the run's Context, the service under test, the rows it
fills and the profiler."""
