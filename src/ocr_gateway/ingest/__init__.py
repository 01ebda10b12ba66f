"""Uploads: streaming spool, type sniffing, inspection and page rendering in process pools."""
