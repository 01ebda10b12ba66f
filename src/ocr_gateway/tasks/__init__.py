"""OCR in one call: base64 images in a JSON body (`/image-sync`, `/image`) become one job, a
*task*, whose pages are published at once and ahead of batch pages (`TASK_PRIORITY`).

The task id is the job id: the job API, the admin routes, the events and the deletes see a
task as the job it is. A task's status, result and progress are read from the job, its pages
and its events (`EventHub`), so any API process answers for it.
"""

# `jobs.priority` (copied to its pages) of a task; batch jobs are 0. Publishing reads it to
# claim and queue a task's pages first.
TASK_PRIORITY = 1
