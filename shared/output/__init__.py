"""Centreon plugin output: states, threshold ranges, perfdata, the wording of a check and
its rendering as centreon::plugins prints it."""
