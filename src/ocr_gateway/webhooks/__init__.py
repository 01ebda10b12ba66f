"""Webhooks: the outbox of deliveries, their signature, the SSRF guard and the sender."""
