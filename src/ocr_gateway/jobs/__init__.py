"""The job and page domain: its queries, its service and its response models."""
