"""A job's results as files: txt and json streamed from the database, pdf and zip built once in
the render pool next to the page images and served from disk."""
