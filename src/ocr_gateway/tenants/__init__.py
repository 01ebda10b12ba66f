"""Tenants: who a client is (API keys), what it may see (its own jobs), and its limits."""
