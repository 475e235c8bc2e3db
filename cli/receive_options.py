"""The receive side's options of `smtp-checks check --mode=roundtrip`: the mailbox to find
the message in, how long it may take, and the thresholds on its delivery."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from smtp_checks.cli import option_rules as rules
from smtp_checks.shared.errors import OptionError
from smtp_checks.shared.mailbox.spec import MailboxSpec, ReceiveProtocol
from smtp_checks.shared.probe import validation
from smtp_checks.shared.probe.spec import TlsMode, TlsSettings

# Seconds. With the send and the last look, an active check stays within Centreon Engine's
# default service_check_timeout (60 s); the pipeline has no such limit (its default: 120).
DEFAULT_RECEIVE_TIMEOUT = "40"
_KEYS = frozenset({"layer", "ssl_verify_mode", "ssl_verify_ca", "mailbox", "junk"})
# A comma followed by a known key starts the next item; any other comma is in the value.
_ITEMS = re.compile(rf",(?=(?:{'|'.join(sorted(_KEYS))})=)")


@dataclass(frozen=True)
class ReceiveOptions:
    mailbox: MailboxSpec
    timeout: float  # seconds the message has to arrive
    warning: str | None  # thresholds on the delivery time (validated)
    critical: str | None


def add_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--receive-protocol")
    add("--receive-hostname")
    add("--receive-port")
    add("--receive-username")
    add("--receive-password")
    add("--receive-options", action="append", default=[])
    add("--receive-timeout", default=DEFAULT_RECEIVE_TIMEOUT)
    add("--warning-delivery")
    add("--critical-delivery")


def receive_options(args: argparse.Namespace, timeout: float) -> ReceiveOptions:
    """The receive side; each look has `timeout` (the check's) at most."""
    protocol = _protocol(args.receive_protocol)
    host = _required(args.receive_hostname, "receive-hostname")
    rules.checked(validation.host_name, host, "--receive-hostname")
    username = _required(args.receive_username, "receive-username")
    rules.checked(validation.one_line, username, "--receive-username")
    password = _required(args.receive_password, "receive-password")
    rules.checked(validation.text, password, "--receive-password")
    options, junk = _receive_keys(args.receive_options)
    tls = _layer(options.get("layer", "ssl"))
    port = (
        rules.port(args.receive_port, "receive-port")
        if args.receive_port
        else protocol.default_port(tls)
    )
    folder = options.get("mailbox", "INBOX")
    mailbox = rules.checked(validation.one_line, folder, "receive-options mailbox")
    if protocol is ReceiveProtocol.POP3 and (junk or mailbox != "INBOX"):
        which = "junk" if junk else "mailbox"
        raise OptionError(f"Wrong receive-options {which}: folders need IMAP (POP3 has one)")
    verify = rules.verify_mode(options.get("ssl_verify_mode", "1"))
    ca_file = options.get("ssl_verify_ca")
    if ca_file:
        rules.checked(validation.ca_file, ca_file, "receive-options ssl_verify_ca")
    receive_timeout = rules.timeout(args.receive_timeout, "receive-timeout")
    rules.thresholds(args.warning_delivery, args.critical_delivery, "-delivery")
    spec = MailboxSpec(
        protocol=protocol,
        host=host,
        port=port,
        username=username,
        password=password,
        tls=TlsSettings(mode=tls, verify=verify, ca_file=ca_file or None),
        timeout=timeout,
        mailbox=mailbox,
        junk=junk,
    )
    return ReceiveOptions(spec, receive_timeout, args.warning_delivery, args.critical_delivery)


def _protocol(text: str | None) -> ReceiveProtocol:
    if text is None:
        raise OptionError("Please set receive-protocol option (imap or pop3)")
    try:
        return ReceiveProtocol(text.lower())
    except ValueError:
        raise OptionError(f"Wrong receive-protocol '{text}' (imap or pop3)") from None


def _layer(text: str) -> TlsMode:
    try:
        return TlsMode.from_layer(text)
    except ValueError as error:
        raise OptionError(f"Wrong receive-options layer: {error}") from None


def _receive_keys(options: list[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """`key=value` items, one per option or several in one (`layer=ssl,mailbox=INBOX`);
    `junk=` may be given more than once, or list folders (`junk=Junk,Spam`)."""
    values: dict[str, str] = {}
    junk: list[str] = []
    for item in (item for option in options for item in _ITEMS.split(option)):
        key, separator, value = item.partition("=")
        if not separator or not key or not value:
            continue
        if key not in _KEYS:
            known = ", ".join(sorted(_KEYS))
            raise OptionError(f"Unknown receive-options key '{key}' (known: {known})")
        if key == "junk":
            folders = [folder.strip() for folder in value.split(",") if folder.strip()]
            junk += [rules.checked(validation.one_line, f, "receive-options junk") for f in folders]
        else:
            values[key] = value
    return values, tuple(junk)


def _required(value: str | None, option: str) -> str:
    if not value:
        raise OptionError(f"Please set {option} option")
    return value
