"""For `celery -A workers.celery_main worker -Q checks.SITE -P threads -c 200`.

Reads the configuration from SMTP_CHECKS_CONFIG and the site (for its rate limit) from
SMTP_CHECKS_SITE. The check task then runs in Celery's thread pool: it works, but
`smtp-checks worker` (one event loop, no thread per check) is faster and measures `time`
more exactly under load; prefer it.
"""

from __future__ import annotations

import os

from smtp_checks.shared.config import load_config
from smtp_checks.workers.worker_app import celery_worker_app

app = celery_worker_app(
    load_config(os.environ["SMTP_CHECKS_CONFIG"]), os.environ["SMTP_CHECKS_SITE"]
)
