"""The result consumer, next to Centreon: renders results, tracks the state of every
service and forwards to Centreon through its outboxes and forwarders."""
