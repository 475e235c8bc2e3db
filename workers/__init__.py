"""Roles that run on pollers: check tasks, the result consumer and the Centreon forwarders."""
