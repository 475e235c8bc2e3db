"""What a check task message holds: the Celery task messages the beat publishes (protocol 2)
carry one CheckRequest as their only argument. Anything else is kept whole, to be
dead-lettered as such."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from smtp_checks.shared.celery_app import CHECK_TASK


def request_of(task: object, body: object) -> object:
    """The CheckRequest of a task message's body (`[args, kwargs, embed]`)."""
    if task != CHECK_TASK:
        return {"task": task, "body": body}
    if isinstance(body, list | tuple) and body and isinstance(body[0], list | tuple):
        kwargs = body[1] if len(body) > 1 and isinstance(body[1], dict) else {}
        return request_from_arguments(body[0], kwargs)
    return body


def request_from_arguments(args: Sequence[object], kwargs: Mapping[str, object]) -> object:
    """The CheckRequest of a check task's arguments: its one positional argument."""
    if len(args) == 1 and not kwargs:
        return args[0]
    return {"args": list(args), **kwargs}
