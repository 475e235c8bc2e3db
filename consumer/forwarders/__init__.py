"""Forwarders deliver passive results to Centreon: Engine command file, REST API v2, v1."""
