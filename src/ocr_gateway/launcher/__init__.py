"""Starting and keeping alive the gateway's processes: API, dispatcher and OCR workers."""
