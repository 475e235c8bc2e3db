"""The Perl plugin's command line, parsed into what the probe, thresholds and output need.

Centreon command definitions pass options as `--opt=value` or `--opt value`, some of them
repeated (`--smtp-options`, `--smtp-send-options`). Every problem becomes an `OptionError`
whose text is the plugin's own where the plugin has one, so existing checks keep reading
the same messages.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

from smtp_checks.cli import option_rules as rules
from smtp_checks.cli import password_managers
from smtp_checks.cli.receive_options import ReceiveOptions, receive_options
from smtp_checks.cli.receive_options import add_options as add_receive_options
from smtp_checks.shared.errors import OptionError
from smtp_checks.shared.output.options import (
    OutputOptions,
    parse_change_exits,
    parse_float_precision,
    parse_opt_exit,
    parse_range_perfdata,
    parse_substitution,
    select_output_format,
)
from smtp_checks.shared.output.perl_regex import Substitution
from smtp_checks.shared.output.thresholds import Thresholds

__all__ = ["CheckOptions", "InfoRequest", "OptionError", "output_options_or_default", "parse"]
from smtp_checks.shared.probe import validation
from smtp_checks.shared.probe.message import check_tag
from smtp_checks.shared.probe.spec import (
    MECHANISMS,
    CommandStep,
    Credentials,
    IpVersion,
    MessageSpec,
    Mode,
    ProbeSpec,
    TlsMode,
    TlsSettings,
)

PLUGIN_NAME = "apps::protocols::smtp::plugin"
_SMTP_OPTIONS = frozenset(
    {"layer", "port", "auth", "timeout", "debug", "ssl_verify_mode", "ssl_verify_ca"}
    | {"ssl_verify_path", "ssl_verify_file", "hello", "ip", "source_address", "proxy_protocol"}
    | {"tls_min_version"}
)
_SEND_OPTIONS = frozenset({"subject", "body", "contenttype", "charset", "cc", "bcc", "replyto"})


@dataclass(frozen=True)
class CheckOptions:
    """Everything one `smtp-checks check` run needs, validated."""

    spec: ProbeSpec
    thresholds: Thresholds
    cert_thresholds: Thresholds
    chain_thresholds: Thresholds
    extra_perfdata: bool
    output: OutputOptions
    output_file: str | None
    debug: bool
    receive: ReceiveOptions | None = None  # mode roundtrip: the mailbox side


@dataclass(frozen=True)
class InfoRequest:
    """`--help`, `--list-mode` or `--version`: print `text` and exit like the plugin."""

    text: str


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise OptionError(_reword(message))


def _reword(message: str) -> str:
    if message.startswith("unrecognized arguments: "):
        return "Unknown option: " + message.removeprefix("unrecognized arguments: ")
    return message[0].upper() + message[1:]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="smtp-checks check", add_help=False, allow_abbrev=False)
    add = parser.add_argument
    add("--plugin")
    add("--mode")
    add("--list-mode", action="store_true")
    add("--version", action="store_true")
    add("--help", action="store_true")
    # Mode options (both modes; --smtp-from/--smtp-to/--smtp-send-options matter for message)
    add("--hostname")
    add("--port")
    add("--smtp-options", action="append", default=[])
    add("--smtp-send-options", action="append", default=[])
    add("--smtp-from")
    add("--smtp-to")
    add("--username")
    add("--password")
    add("--timeout", default="30")
    add("--warning")
    add("--critical")
    # Ours, beyond the plugin
    add("--extra-perfdata", action="store_true")
    add("--warning-cert-days")
    add("--critical-cert-days")
    add("--warning-chain-days")
    add("--critical-chain-days")
    # Generic Centreon plugin options
    add("--verbose", action="store_true")
    add("--debug", action="store_true")
    add("--filter-perfdata")
    add("--change-exit", action="append", default=[])
    add("--range-perfdata", nargs="?", const="")
    add("--float-precision")
    add("--opt-exit", default="unknown")
    add("--output-ignore-perfdata", action="store_true")
    add("--output-ignore-label", action="store_true")
    add("--change-short-output", action="append", default=[])
    add("--change-long-output", action="append", default=[])
    add("--filter-uom")
    add("--output-json", action="store_true")
    add("--output-xml", action="store_true")
    add("--output-openmetrics", action="store_true")
    add("--output-file")
    add_receive_options(parser)
    password_managers.add_options(parser)
    return parser


def parse(argv: list[str], environ: Mapping[str, str] | None = None) -> CheckOptions | InfoRequest:
    """Parse a plugin command line. Raises `OptionError` with the plugin's wording."""
    args = build_parser().parse_args(argv)
    output = _output_options(args)  # first, as the plugin reads output options first
    if args.plugin is not None and args.plugin != PLUGIN_NAME:
        raise OptionError(f"Unknown plugin '{args.plugin}' (this is {PLUGIN_NAME})")
    info = _info_request(args)
    if info is not None:
        return info
    mode = _mode(args.mode)
    try:
        password_managers.apply(args, os.environ if environ is None else environ)
    except password_managers.PasswordManagerError as error:
        raise OptionError(str(error)) from None
    thresholds = rules.thresholds(args.warning, args.critical, "")
    if not args.hostname:
        raise OptionError("Please set the hostname option")
    rules.checked(validation.host_name, args.hostname, "--hostname")
    if mode.has_envelope:
        if args.smtp_from is None:
            raise OptionError("Please set smtp-from option")
        if args.smtp_to is None:
            raise OptionError("Please set smtp-to option")
    spec = _probe_spec(args, mode)
    return CheckOptions(
        spec=spec,
        thresholds=thresholds,
        cert_thresholds=rules.thresholds(
            args.warning_cert_days, args.critical_cert_days, "-cert-days"
        ),
        chain_thresholds=rules.thresholds(
            args.warning_chain_days, args.critical_chain_days, "-chain-days"
        ),
        extra_perfdata=args.extra_perfdata,
        output=output,
        output_file=args.output_file,
        debug=args.debug,
        receive=receive_options(args, spec.timeout) if mode is Mode.ROUNDTRIP else None,
    )


def output_options_or_default(argv: list[str]) -> OutputOptions:
    """The output options of a command line that may itself be invalid (for error output)."""
    try:
        args, _ = build_parser().parse_known_args(argv)
        return _output_options(args)
    except (OptionError, ValueError):
        return OutputOptions()


def _info_request(args: argparse.Namespace) -> InfoRequest | None:
    if not (args.version or args.list_mode or args.help):
        return None
    from smtp_checks.cli import plugin_help  # noqa: PLC0415 (rarely needed)

    if args.version:
        return InfoRequest(plugin_help.version_text())
    if args.list_mode:
        return InfoRequest(plugin_help.list_modes_text())
    return InfoRequest(plugin_help.help_text(args.mode))


def _mode(name: str | None) -> Mode:
    if name is None:
        raise OptionError("Need to specify '--mode' option.")
    try:
        return Mode(name)
    except ValueError:
        raise OptionError(
            f"mode '{name}' doesn't exist (use --list-mode option to show available modes)."
        ) from None


def _output_options(args: argparse.Namespace) -> OutputOptions:
    try:
        return OutputOptions(
            verbose=args.verbose,
            debug=args.debug,
            filter_perfdata=args.filter_perfdata,
            change_exit=parse_change_exits(args.change_exit),
            range_perfdata=parse_range_perfdata(args.range_perfdata),
            float_precision=parse_float_precision(args.float_precision),
            opt_exit=parse_opt_exit(args.opt_exit),
            ignore_perfdata=args.output_ignore_perfdata,
            ignore_label=args.output_ignore_label,
            change_short_output=_substitutions(args.change_short_output),
            change_long_output=_substitutions(args.change_long_output),
            filter_uom=args.filter_uom,
            output_format=select_output_format(
                xml=args.output_xml, json=args.output_json, openmetrics=args.output_openmetrics
            ),
            plugin_name=PLUGIN_NAME,
            mode=args.mode or "",
        )
    except ValueError as error:
        raise OptionError(str(error)) from None


def _substitutions(values: list[str]) -> tuple[Substitution, ...]:
    return tuple(rule for rule in map(parse_substitution, values) if rule is not None)


def _key_values(items: list[str], allowed: frozenset[str], what: str) -> dict[str, str]:
    """`key=value` items as the plugin reads them (`^(.+?)=(.+)$`; others are skipped)."""
    values: dict[str, str] = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key or not value:
            continue
        if key not in allowed:
            raise OptionError(f"Unknown {what} '{key}' (known: {', '.join(sorted(allowed))})")
        values[key] = value
    return values


def _dialogue(items: list[str]) -> tuple[str | None, tuple[CommandStep, ...], list[str]]:
    """`expect=`, and the `command=`/`response=` pairs in the order given (a `response=`
    belongs to the `command=` before it; `command=NOOP,response=^250` gives both at once),
    out of the smtp-options; and the other items."""
    expect: str | None = None
    steps: list[CommandStep] = []
    rest: list[str] = []
    for item in items:
        key, _, value = item.partition("=")
        if key == "expect":
            expect = rules.checked(validation.regex, value, "smtp-options expect")
        elif key == "command":
            value, paired, response = value.partition(",response=")
            steps.append(
                CommandStep(rules.checked(validation.command, value, "smtp-options command"))
            )
            if paired:
                pattern = rules.checked(validation.regex, response, "smtp-options response")
                steps[-1] = CommandStep(steps[-1].command, pattern)
        elif key == "response":
            if not steps or steps[-1].response is not None:
                raise OptionError("Wrong smtp-options response: it must follow a command=")
            pattern = rules.checked(validation.regex, value, "smtp-options response")
            steps[-1] = CommandStep(steps[-1].command, pattern)
        else:
            rest.append(item)
    return expect, tuple(steps), rest


def _probe_spec(args: argparse.Namespace, mode: Mode) -> ProbeSpec:
    expect, commands, options = _dialogue(args.smtp_options)
    smtp = _key_values(options, _SMTP_OPTIONS, "smtp-options key")
    try:
        tls_mode = TlsMode.from_layer(smtp.get("layer", "tls"))
    except ValueError as error:
        raise OptionError(f"Wrong smtp-options layer: {error}") from None
    port_text = smtp.get("port") or args.port
    port = rules.port(port_text) if port_text else tls_mode.default_port
    timeout = rules.timeout(args.timeout, "timeout")
    if "timeout" in smtp:
        timeout = min(timeout, rules.timeout(smtp["timeout"], "smtp-options timeout"))
    hello = smtp.get("hello")
    ip, source = _addressing(args.hostname, smtp)
    return ProbeSpec(
        host=args.hostname,
        port=port,
        mode=mode,
        tls=_tls_settings(tls_mode, smtp),
        timeout=timeout,
        credentials=None if mode is Mode.RELAY else _credentials(args, smtp.get("auth")),
        message=_message(args, mode) if mode.has_envelope else None,
        helo_name=rules.checked(validation.helo_name, hello, "smtp-options hello")
        if hello
        else None,
        record_transcript=args.debug or smtp.get("debug", "0") not in ("", "0"),
        expect=expect,
        commands=commands,
        ip=ip,
        source_address=source,
        proxy_protocol=rules.checked(validation.proxy_version, proxy, "smtp-options proxy_protocol")
        if (proxy := smtp.get("proxy_protocol"))
        else None,
    )


def _addressing(host: str, smtp: dict[str, str]) -> tuple[IpVersion | None, str | None]:
    """`ip=` and `source_address=`, agreeing with each other and with the host."""
    ip_text, source = smtp.get("ip"), smtp.get("source_address")
    ip = rules.checked(validation.ip_version, ip_text, "smtp-options ip") if ip_text else None
    if source is not None:
        rules.checked(validation.local_address, source, "smtp-options source_address")
    try:
        validation.families(host, ip, source)
    except ValueError as error:
        raise OptionError(f"Wrong smtp-options ip or source_address: {error}") from None
    return ip, source


def _tls_settings(mode: TlsMode, smtp: dict[str, str]) -> TlsSettings:
    verify = rules.verify_mode(smtp.get("ssl_verify_mode", "SSL_VERIFY_PEER"))
    ca_file = smtp.get("ssl_verify_ca") or smtp.get("ssl_verify_file")
    ca_path = smtp.get("ssl_verify_path")
    minimum = smtp.get("tls_min_version")
    return TlsSettings(
        min_version=rules.checked(validation.tls_version, minimum, "smtp-options tls_min_version")
        if minimum
        else None,
        mode=mode,
        verify=verify,
        ca_file=rules.checked(validation.ca_file, ca_file, "smtp-options ssl_verify_ca")
        if ca_file
        else None,
        ca_path=rules.checked(validation.ca_directory, ca_path, "smtp-options ssl_verify_path")
        if ca_path
        else None,
    )


def _credentials(args: argparse.Namespace, auth: str | None) -> Credentials | None:
    username = args.username
    if not username or (auth is not None and auth.lower() == "none"):
        return None
    if args.password is None:
        raise OptionError("Please set --password option.")
    rules.checked(validation.one_line, username, "--username")
    rules.checked(validation.text, args.password, "--password")
    mechanism = None
    if auth is not None and auth.upper() != "AUTO":
        mechanism = auth.upper()
        if mechanism not in MECHANISMS:
            known = ", ".join(MECHANISMS)
            raise OptionError(f"AUTH mechanism '{auth}' is not supported (AUTO, none, {known})")
    return Credentials(username=username, password=args.password, mechanism=mechanism)


def _message(args: argparse.Namespace, mode: Mode) -> MessageSpec:
    """The mail; a round trip's carries a new token and the tag of its host's check."""
    send = _key_values(args.smtp_send_options, _SEND_OPTIONS, "smtp-send-options key")
    defaults = MessageSpec(sender=args.smtp_from, to=())
    message = MessageSpec(
        sender=args.smtp_from,
        to=_addresses(args.smtp_to),
        cc=_addresses(send.get("cc", "")),
        bcc=_addresses(send.get("bcc", "")),
        subject=send.get("subject", defaults.subject),
        body=send.get("body", defaults.body),
        content_type=send.get("contenttype", defaults.content_type),
        charset=send.get("charset", defaults.charset),
        reply_to=send.get("replyto"),
    )
    if mode is Mode.ROUNDTRIP:
        tag = check_tag(f"{args.hostname}/roundtrip")
        message = dataclasses.replace(message, token=uuid.uuid4().hex, check_tag=tag)
    if not message.to:
        raise OptionError("Please set smtp-to option")
    if mode is Mode.RELAY and len(message.recipients) != 1:
        raise OptionError("Wrong --smtp-to: a relay test tries one outside address")
    rules.checked(validation.mail_address, message.sender, "--smtp-from")
    for option, addresses in (("--smtp-to", message.to), ("smtp-send-options cc", message.cc),
                              ("smtp-send-options bcc", message.bcc)):  # fmt: skip
        for address in addresses:
            rules.checked(validation.mail_address, address, option)
    if message.reply_to is not None:
        rules.checked(validation.mail_address, message.reply_to, "smtp-send-options replyto")
    rules.checked(validation.one_line, message.subject, "smtp-send-options subject")
    rules.checked(validation.text, message.body, "smtp-send-options body")
    rules.checked(validation.content_type, message.content_type, "smtp-send-options contenttype")
    rules.checked(validation.charset, message.charset, "smtp-send-options charset")
    return message


def _addresses(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())
