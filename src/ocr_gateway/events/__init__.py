"""What happens to a job, as events: recorded in `job_events` in the same transaction as the
change, announced with NOTIFY, and read back by id on any API process (SSE, websocket, long
polls)."""
