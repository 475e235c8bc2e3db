"""The texts of `--version`, `--list-mode` and `--help`, worded like the Perl plugin's."""

from __future__ import annotations

from smtp_checks.shared.version import package_version

_DESCRIPTION = "Check SMTP server (smtp-checks, compatible with apps::protocols::smtp::plugin)."

_COMMON = """\
--hostname          IP address or FQDN of the SMTP server (required).
--port              Port (default: 25; 465 with layer=ssl).
--smtp-options      key=value, repeatable:
                      layer=tls|ssl|none  STARTTLS (default), implicit TLS, or clear text
                      port=N, timeout=SECONDS, auth=AUTO|PLAIN|LOGIN|CRAM-MD5|XOAUTH2|none
                      ssl_verify_mode=SSL_VERIFY_PEER|1 (default) or SSL_VERIFY_NONE|0
                      ssl_verify_ca=FILE, ssl_verify_path=DIR  trusted CAs
                      hello=NAME  EHLO name;  debug=1  dialogue on stderr
                      ip=4|6  that address family only (default: the resolver's order,
                        falling back to the next address, either family)
                      source_address=ADDR  connect from this local address
                      proxy_protocol=v1|v2  send a PROXY protocol header first
                      tls_min_version=1.2|1.3  refuse weaker TLS sessions
                      expect=REGEX  the banner must match (else CRITICAL)
                      command=CMD[,response=REGEX]  repeatable, in order, after EHLO:
                        send CMD; its reply must match REGEX (else CRITICAL)
--username          Username for AUTH; without it no AUTH is attempted.
--password          Password for AUTH (see --pass-manager to keep it off the command line).
--timeout           Seconds for the whole check, connect to QUIT (default: 30).
--warning           Warning threshold on the response time, in seconds (Nagios range).
--critical          Critical threshold on the response time, in seconds (Nagios range).
--warning-cert-days / --critical-cert-days
                    Thresholds on the server certificate's days to expiry (e.g. 30: / 7:).
--warning-chain-days / --critical-chain-days
                    The same on the earliest expiry of the chain the server sent.
--extra-perfdata    Add phase times and the days left of the certificate and of its chain.
--verbose           Also the server address (when given as a name), TLS version and cipher.
"""

_MESSAGE = """\
--smtp-from         Envelope and header sender (required).
--smtp-to           Recipient(s), comma-separated (required).
--smtp-send-options key=value, repeatable: subject=, body=, contenttype=text/plain,
                    charset=utf-8, cc=, bcc=, replyto=
"""

_RELAY = """\
--smtp-from         Envelope sender of the test (required).
--smtp-to           ONE outside address the server must not relay to (required).
"""

_ROUNDTRIP = """\
--receive-protocol  imap or pop3: where the message is looked for (required).
--receive-hostname  The mailbox server (required).
--receive-port      Its port (default: 993 IMAPS, 143 IMAP, 995 POP3S, 110 POP3).
--receive-username / --receive-password
                    The mailbox's account (required).
--receive-options   key=value, repeatable:
                      layer=ssl|tls|none  implicit TLS (default), STARTTLS/STLS, clear text
                      ssl_verify_mode=1 (default) or 0;  ssl_verify_ca=FILE  trusted CAs
                      mailbox=INBOX  the folder the message must reach
                      junk=FOLDER  repeatable (IMAP): found there is WARNING
--receive-timeout   Seconds the message has to arrive (default: 40); else CRITICAL. The
                    check lasts up to --timeout + --receive-timeout + a look: keep that
                    under Centreon's service_check_timeout (60 s unless raised).
--warning-delivery / --critical-delivery
                    Thresholds on the delivery time, in seconds (Nagios ranges).
                    --extra-perfdata adds the hops of the Received: headers; --verbose
                    says within how much the delivery time is measured (the looks' interval).
"""

_GENERIC = """\
Generic options: --verbose --debug --filter-perfdata=REGEX --filter-uom=REGEX
  --change-exit=FROM=TO --range-perfdata=0|1|2 --float-precision=N --opt-exit=STATUS
  --output-ignore-perfdata --output-ignore-label --change-short-output=PATTERN~REPL~FLAGS
  --change-long-output=PATTERN~REPL~FLAGS --output-json --output-xml --output-openmetrics
  --output-file=PATH --pass-manager=environment|file --environment-map-option=OPTION=VAR
  --secret-file=FILE --secret-search-value=NAME=$.path --secret-map-option=OPTION=%{NAME}
"""


def version_text() -> str:
    return f"Plugin Version: {package_version()}"


def list_modes_text() -> str:
    return (
        f"Plugin Description:\n    {_DESCRIPTION}\n\nModes Available:\n   login\n   message\n"
        "   relay\n   roundtrip"
    )


def help_text(mode: str | None) -> str:
    usage = (
        "smtp-checks check --plugin=apps::protocols::smtp::plugin "
        "--mode=login|message|relay|roundtrip "
        "[options]"
    )
    if mode == "login":
        body = "Mode login: connect, EHLO, TLS, AUTH, QUIT.\n\n" + _COMMON
    elif mode == "message":
        body = "Mode message: as login, then send one message.\n\n" + _COMMON + _MESSAGE
    elif mode == "relay":
        body = (
            "Mode relay: connect, EHLO, TLS, then without AUTH: MAIL FROM, RCPT TO an outside\n"
            "address, RSET, QUIT (never DATA: nothing is sent). OK when the recipient is\n"
            "refused (5xx), WARNING for a 4xx, CRITICAL when accepted: an open relay.\n\n"
            + _COMMON
            + _RELAY
        )
    elif mode == "roundtrip":
        body = (
            "Mode roundtrip: send as message does, with a token in a header and the subject,\n"
            "then look for that message in a mailbox over IMAP or POP3 until it arrives: its\n"
            "delivery time, from the end of DATA; then delete it (and what earlier runs left).\n"
            "Not delivered within --receive-timeout: CRITICAL. Mailbox unreadable: UNKNOWN.\n\n"
            + _COMMON
            + _MESSAGE
            + _ROUNDTRIP
        )
    else:
        body = list_modes_text() + "\n\nUse --mode=NAME --help for the options of a mode."
    return f"Usage: {usage}\n\n{body}\n{_GENERIC}".rstrip()
