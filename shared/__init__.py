"""The core every role imports: SMTP probe, thresholds, Centreon plugin output, and (later) config,
message schemas and the Celery app."""
