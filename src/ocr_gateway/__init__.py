"""ocr-gateway: turns uploaded documents into PNG pages and feeds them to OCR workers."""

__version__ = "0.1.0"
