"""Receiving files: streamed multipart spooling, magic-byte sniffing and the upload limits."""
