"""Settings, the error hierarchy, logging, background tasks and the process pool."""
