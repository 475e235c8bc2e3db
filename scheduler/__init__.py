"""The scheduler role: the beat (schedule from the config, one leader among several beats)
and ad hoc checks (`smtp-checks enqueue`)."""
