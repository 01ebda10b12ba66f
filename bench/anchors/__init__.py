"""Common alternatives the bench measures the gateway against, as small runnable apps."""
