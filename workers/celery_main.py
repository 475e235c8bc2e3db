"""For `celery -A workers.celery_main worker -Q checks.SITE -P threads -c 500`.

Reads the configuration from SMTP_CHECKS_CONFIG and the site (for its rate limit) from
SMTP_CHECKS_SITE. `smtp-checks worker` does the same with sensible defaults; use this when
you want Celery's own command line.
"""

from __future__ import annotations

import os

from shared.config import load_config
from workers.worker_app import worker_app

app = worker_app(load_config(os.environ["SMTP_CHECKS_CONFIG"]), os.environ["SMTP_CHECKS_SITE"])
