"""Detect → edit → recognise (`/v1/ocr/jobs`, docs/detect.md): a job whose pages are first
searched for text boxes only, whose boxes a person or a rule engine may then replace, and
whose recognition reads exactly the boxes kept.

Such a job is an ordinary job once its file is uploaded (a `jobs` row with the same id, its
pages in `pages`), published as the one-call tasks are, at once; its contract status and its
detect result (an artefact in the store) are kept in `detect_jobs`.
"""

# The most boxes a page of a detect result may hold (a PATCH with more is refused).
MAX_BOXES_PER_PAGE = 5000
