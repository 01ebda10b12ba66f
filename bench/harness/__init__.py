"""What every section of the bench shares: the plan and its rows, the service under test, the
run's context (database, broker, bare render pool), CPU and profile watchers, and the report."""
