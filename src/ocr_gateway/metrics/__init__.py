"""Prometheus metrics: every metric defined once (`registry.py`), the gauges read from
PostgreSQL and RabbitMQ at most every few seconds (`collectors.py`), the HTTP middleware of the
API (`http.py`), and the small server of the dispatcher and the workers (`server.py`)."""
