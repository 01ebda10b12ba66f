"""OCR in one call: base64 images in a JSON body (`/image-sync`, `/image`) become one job, a
*task*, whose pages are published at once and ahead of batch pages (`TASK_PRIORITY`).

The task id is the job id: the job API, the admin routes, the events and the deletes see a
task as the job it is. A task's status, result and progress are read from the job, its pages
and its events (`EventHub`), so any API process answers for it.
"""

# `jobs.priority` (copied to its pages) of a task, above every job's own priority (0-9):
# publishing claims a task's pages first and sends them with this AMQP priority, the pages
# queue's `x-max-priority`.
TASK_PRIORITY = 10
