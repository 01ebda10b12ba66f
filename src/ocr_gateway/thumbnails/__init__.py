"""`/images` (the thumbnail service's contract) and the thumbnails of job pages."""
