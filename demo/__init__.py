"""`smtp-checks run --demo`: local SMTP servers and a config that exercises the pipeline."""
