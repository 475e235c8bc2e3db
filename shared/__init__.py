"""The core every role imports: config models, the SMTP probe, thresholds and Centreon plugin
output, message schemas, the Celery app, and the Redis-side records (ledger, heartbeats,
leases, result queue, metrics plumbing)."""
