"""What the unit tests, the integration tests and the benchmarks share."""
