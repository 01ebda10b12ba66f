"""Pages: inspection and rendering in process pools, and where page images are stored."""
