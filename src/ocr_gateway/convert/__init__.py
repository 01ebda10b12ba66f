"""Tables to XLSX: `POST /api/v1/convert/batch` makes one job of many files whose pages are
searched for tables, and `GET /api/v1/download/{file_id}` serves its workbook once it is done."""

from ocr_gateway.db.models import JobStatus

# The dedup kind of a batch (uploads/dedup.py): the same files sent for OCR are another job.
KIND_CONVERT = "convert"
# A job's workbook is listed and served once the job is done: completed, or failed with some
# pages unread (their sheets say why). A cancelled job has none.
WORKBOOK_READY = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})
