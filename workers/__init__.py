"""The worker role, on each poller: takes its site's checks off the queue, runs them under
rate limits and deadlines, publishes their results."""
