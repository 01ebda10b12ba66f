"""Consuming OCR results and storing them idempotently."""
