"""The monitoring page (`/admin/ui`): its static files, and the overview its data comes from."""
