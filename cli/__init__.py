"""The command line, the top of the house: `smtp-checks` and one module per sub-command.
Nothing imports it."""
