"""`--pass-manager=environment|file`: take option values (the password, typically) from the
environment or a JSON secret file instead of the command line, as Centreon plugins do.

Only the simple JSON paths are supported for `--secret-search-value` (`$.a.b`, `$.list[0].c`);
anything else is refused with a clear message rather than guessed at.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping

from smtp_checks.shared.errors import OptionError

_PATH_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")
_REFERENCE = re.compile(r"%\{(.*?)\}")


class PasswordManagerError(OptionError, ValueError):
    pass


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pass-manager")
    parser.add_argument("--environment-map-option", action="append", default=[])
    parser.add_argument("--secret-file")
    parser.add_argument("--secret-search-value", action="append", default=[])
    parser.add_argument("--secret-map-option", action="append", default=[])


def apply(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Overwrite the options the chosen manager maps, in place."""
    manager = args.pass_manager
    if manager is None or manager == "":
        return
    if manager == "environment":
        for option, variable in _pairs(args.environment_map_option):
            _set_option(args, option, environ.get(variable, ""))
    elif manager == "file":
        _apply_file(args)
    else:
        raise PasswordManagerError(
            f"Unsupported pass-manager '{manager}' (supported: environment, file)"
        )


def _apply_file(args: argparse.Namespace) -> None:
    if not args.secret_file:
        return
    try:
        with open(args.secret_file, encoding="utf-8") as handle:
            import json  # noqa: PLC0415 (only for --pass-manager=file)

            secrets = json.load(handle)
    except OSError as error:
        raise PasswordManagerError(
            f"Cannot read secret file '{args.secret_file}': {error.strerror}"
        ) from None
    except ValueError:
        raise PasswordManagerError("Cannot decode secret file") from None
    found: dict[str, str] = {}
    for name, path in _pairs(args.secret_search_value):
        found[name] = _lookup(secrets, _REFERENCE.sub(lambda m: _option(args, m.group(1)), path))
    for option, template in _pairs(args.secret_map_option):
        _set_option(args, option, _REFERENCE.sub(lambda m: found.get(m.group(1), ""), template))


def _lookup(document: object, path: str) -> str:
    if not path.startswith("$"):
        raise PasswordManagerError(f"Unsupported secret-search-value path '{path}'")
    position = 1
    value = document
    while position < len(path):
        step = _PATH_STEP.match(path, position)
        if step is None:
            raise PasswordManagerError(
                f"Unsupported secret-search-value path '{path}' (use $.key.key or $.list[0])"
            )
        key, index, quoted = step.groups()
        position = step.end()
        try:
            value = value[int(index)] if index is not None else value[key or quoted]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return ""
    return "" if value is None else str(value)


def _option(args: argparse.Namespace, name: str) -> str:
    """The value of another option, for `%{hostname}` in a search path."""
    return str(getattr(args, name.replace("-", "_"), "") or "")


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    """`name=value` items (`^(.+?)=(.+)$`); malformed ones are skipped, as the plugin does."""
    pairs = []
    for item in items:
        name, separator, value = item.partition("=")
        if separator and name and value:
            pairs.append((name, value))
    return pairs


def _set_option(args: argparse.Namespace, option: str, value: str) -> None:
    setattr(args, option.replace("-", "_"), value)
