"""A private, real Postfix (Debian's package) for the tests that need a real MTA to probe.

`PostfixInstance` writes a configuration of its own in a temporary directory (main.cf,
master.cf, Cyrus SASL's smtpd.conf and sasldb, queue, data, log and Maildir all live
there), starts Postfix's `master` daemon on that configuration as a child of the test
process, waits until every port answers with a 220 banner, and stops it at the end. Its
smtpd services, each on a free loopback port of its own:

- ``plain``: STARTTLS offered (``may``), no AUTH; on 127.0.0.1 and, when the host has IPv6
  loopback, on [::1] with the same port number;
- ``submission``: STARTTLS required, AUTH (PLAIN, LOGIN) after STARTTLS, relaying only for
  authenticated clients;
- ``smtps``: implicit TLS (wrapper mode), AUTH offered, relaying only when authenticated;
- ``proxy``: like ``plain`` behind HAProxy's PROXY protocol (v1 and v2): the client must
  send a PROXY header first, and Postfix logs the client address it names;
- ``open_relay``: an open relay, accepting RCPT to any domain without AUTH.

Every port but ``open_relay`` refuses unauthenticated relaying with
"554 5.7.1 ... Relay access denied" (`mynetworks` is empty: loopback is not trusted).
Mail for the test domain goes into one Maildir (`PostfixInstance.maildir`), or to an LMTP
server of the tests (``lmtp=(host, port)``); mail for other domains is discarded, so nothing
leaves the machine.

What a test reads: `ports` (name -> port on 127.0.0.1), `ipv6`, `log_text()` and
`wait_for_log(regex)` (maillog_file, written by postlogd: smtpd lines name the service, e.g.
``postfix/proxy/smtpd[..]: connect from unknown[198.51.100.7]:12345``), `maildir`,
`messages()` and `wait_for_messages(n)`, `postconf(...)`. The TLS certificate and key may be
anywhere (smtpd reads them as root before dropping privileges); the user is stored in a
sasldb of the instance (``local@realm`` as Cyrus splits it; a bare name gets the realm
`myhostname`).

Stopping is what `postfix stop` does (SIGTERM to the master, which stops its children),
then SIGKILL to whatever is left of the master's process group and of this instance's
daemons, found by their MAIL_CONFIG. If the test process itself is killed, a watchdog
shell (`_WATCHDOG`) stops the instance and removes its directory within seconds.

Nothing outside the instance directory is written: Postfix runs with ``-c DIR``, which
root may do without listing DIR in the system main.cf's ``alternate_config_directories``
(only set-gid commands such as postdrop check that list), and the system master.cf, main.cf,
queue and data directories are neither read for the configuration nor touched. `postfix
check` reads the package's file list (``meta_directory``, /etc/postfix) to create the
instance's queue directories. No system Postfix needs to be configured or running; port
25 is never used. Postfix must run as root (its master daemon requires it).

Skipped locally when Postfix or saslpasswd2 is missing, a failure under ``CI=true``. To
install them without configuring or starting a system instance (for ``.ci/run``)::

    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \\
        postfix sasl2-bin libsasl2-modules

(On a machine where services start on installation, the package's own instance stays
unconfigured with "No configuration": Debian's init script does not start Postfix without
/etc/postfix/main.cf.)

Use (tests/conftest.py provides both fixtures)::

    def test_something(postfix_factory):
        mta = postfix_factory(cert=..., key=..., user="monitor@test.example", password="pw")
        smtplib.SMTP("127.0.0.1", mta.ports["plain"])

    def test_a_probe(mta):  # one Postfix per test module, from `probe_target`
        smtplib.SMTP("127.0.0.1", mta.ports["plain"])
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import functools
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"
SASLPASSWD2 = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"
INSTALL_HINT = (
    'echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections'
    " && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends"
    " postfix sasl2-bin libsasl2-modules"
)

# HAProxy's PROXY protocol v2: signature, version 2 + LOCAL command, family UNSPEC, length 0.
PROXY_V2_LOCAL = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00, 0x00, 0x00])

SERVICES = ("plain", "submission", "smtps", "proxy", "open_relay")
DEFAULT_HOSTNAME = "mx.test.example"
DEFAULT_DOMAIN = "test.example"

_MAIN = """\
compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/queue
data_directory = {d}/data
maillog_file = {d}/log/postfix.log
maillog_file_prefixes = {d}/log
mail_owner = postfix
setgid_group = postdrop

myhostname = {hostname}
mydomain = {domain}
myorigin = $myhostname
inet_interfaces = loopback-only
inet_protocols = {protocols}
# Loopback clients must not be trusted, or every port would relay for the tests' clients.
mynetworks =
smtpd_peername_lookup = no
smtpd_client_port_logging = yes
smtpd_banner = $myhostname ESMTP Postfix (test instance)
biff = no
append_dot_mydomain = no
delay_warning_time = 0

# No local(8) delivery, aliases or system files: only the virtual test domain.
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:5.1.1 local delivery disabled in the test instance
relay_domains =
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = static:Maildir/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_transport = {virtual_transport}
lmtp_host_lookup = native
# Mail for any other domain (relayed through open_relay) must never leave the machine.
default_transport = discard:relayed mail discarded by the test instance
relay_transport = $default_transport

smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_sasl_auth_enable = no
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
# Debian's smtpd reads $config_directory/sasl/smtpd.conf whatever this says; other builds
# read it from here.
cyrus_sasl_config_path = {d}/etc/sasl
smtpd_sasl_local_domain = $myhostname
smtpd_sasl_security_options = noanonymous

smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_tls_session_cache_database =
smtp_tls_security_level = none
"""

# The standard services without chroot (a chroot would need copies of /etc files), and no
# default smtp or pickup service: only the ports below accept mail.
_MASTER_BASE = """\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_SERVICE_OPTIONS: dict[str, list[str]] = {
    "plain": [],
    "submission": [
        "syslog_name=postfix/submission",
        "smtpd_tls_security_level=encrypt",
        "smtpd_tls_auth_only=yes",
        "smtpd_sasl_auth_enable=yes",
        "smtpd_recipient_restrictions=permit_sasl_authenticated,reject",
    ],
    "smtps": [
        "syslog_name=postfix/smtps",
        "smtpd_tls_wrappermode=yes",
        "smtpd_tls_security_level=encrypt",
        "smtpd_sasl_auth_enable=yes",
    ],
    "proxy": [
        "syslog_name=postfix/proxy",
        "smtpd_upstream_proxy_protocol=haproxy",
    ],
    "open_relay": [
        "syslog_name=postfix/open_relay",
        # smtpd refuses to start with restrictions that plainly permit everything; every
        # client counting as "mynetworks" has the same effect and passes that check.
        "mynetworks=0.0.0.0/0,[::]/0",
        "smtpd_relay_restrictions=permit_mynetworks,reject_unauth_destination",
    ],
}

_SASL_CONF = """\
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: {sasldb}
mech_list: PLAIN LOGIN
"""


@functools.cache
def daemon_directory() -> Path:
    """Where Postfix's daemons (master, smtpd, ...) are installed: /usr/lib/postfix/sbin."""
    found = subprocess.run(
        [POSTCONF, "-d", "-h", "daemon_directory"], capture_output=True, text=True, check=True
    )
    return Path(found.stdout.strip())


def require_postfix() -> None:
    """Skip the test (fail under CI=true) unless Postfix and saslpasswd2 can be run here."""
    missing = [path for path in (POSTFIX, POSTCONF, SASLPASSWD2) if not os.access(path, os.X_OK)]
    if missing:
        message = f"Postfix not installed ({', '.join(missing)} missing): {INSTALL_HINT}"
    elif os.geteuid() != 0:
        message = "a private Postfix instance needs root (its master daemon refuses otherwise)"
    elif not os.access(daemon_directory() / "master", os.X_OK):
        message = f"Postfix's master daemon not found in {daemon_directory()}: {INSTALL_HINT}"
    else:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: the tests against a real Postfix must run)")
    pytest.skip(message)


def ipv6_loopback() -> bool:
    """Whether [::1] can be bound here (containers sometimes lack IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def free_port(*, ipv6: bool = False) -> int:
    """A TCP port free on 127.0.0.1 (and on ::1 too when `ipv6`), for a server to bind."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if not ipv6:
            return port
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock6:
                sock6.bind(("::1", port))
        except OSError:
            continue
        return port
    raise AssertionError("no TCP port free on both 127.0.0.1 and ::1")


# Stops the master's process group once its stdin reaches end of file: when the test
# process dies, however it dies, the kernel closes the pipe's other end; then removes the
# instance directory ($2, when it is ours). (`setpriv --pdeathsig`, as in
# tests/e2e/pipeline.py, does not hold for Postfix's master, which survives its parent.)
_WATCHDOG = """\
read _
kill -TERM "-$1" 2>/dev/null || exit 0
sleep 3
kill -KILL "-$1" 2>/dev/null
[ -n "$2" ] && rm -rf -- "$2"
"""


def read_banner(
    host: str, port: int, *, tls: bool = False, proxy: bool = False, timeout: float = 1.0
) -> str:
    """The first reply line of the SMTP server at (host, port); implicit TLS when `tls`,
    after a PROXY v2 LOCAL header when `proxy` (Postfix then keeps the real peer address:
    nothing forwarded shows up in the log; Postfix 3.7 rejects v1's "PROXY UNKNOWN")."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
        sock.settimeout(timeout)
        sock.connect((host, port))
        if tls:
            # Only whether it answers: the tests verify the certificate themselves.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = stack.enter_context(context.wrap_socket(sock))
        if proxy:
            sock.sendall(PROXY_V2_LOCAL)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
        with contextlib.suppress(OSError):
            sock.sendall(b"QUIT\r\n")
        return data.decode(errors="replace").strip()


class Certificates:
    """A throw-away CA and a server certificate for 127.0.0.1, ::1 and localhost, for a
    Postfix of the tests (`cert`, `key`) and its clients (`ca`)."""

    def __init__(self, directory: Path) -> None:
        import trustme

        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "::1", "localhost")
        self.ca = directory / "ca.pem"
        self.cert = directory / "cert.pem"
        self.key = directory / "key.pem"
        ca.cert_pem.write_to_path(str(self.ca))
        leaf.cert_chain_pems[0].write_to_path(str(self.cert))
        leaf.private_key_pem.write_to_path(str(self.key))

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context (hostname checked) that trusts only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca))


class _PortTaken(AssertionError):
    pass


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, port))
    except OSError:
        return False
    return True


class PostfixInstance:
    """A private Postfix in a directory of its own; see the module docstring.

    `ports` maps each name of `SERVICES` to its 127.0.0.1 port; `ipv6` says whether
    ``plain`` also listens on [::1] (same port). Start with `start()` or `with`.
    """

    def __init__(
        self,
        *,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        user: str,
        password: str,
        hostname: str = DEFAULT_HOSTNAME,
        domain: str = DEFAULT_DOMAIN,
        lmtp: tuple[str, int] | None = None,
        ipv6: bool | None = None,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        require_postfix()
        self.cert = Path(cert).resolve()
        self.key = Path(key).resolve()
        self.user = user
        self.password = password
        self.hostname = hostname
        self.domain = domain
        self.lmtp = lmtp
        self.ipv6 = ipv6_loopback() if ipv6 is None else ipv6
        self._own_directory = directory is None
        # Outside pytest's tmp_path: Postfix's unprivileged processes must traverse it.
        self.directory = Path(
            tempfile.mkdtemp(prefix="smtp-checks-postfix-") if directory is None else directory
        ).resolve()
        self.config_directory = self.directory / "etc"
        self.log_file = self.directory / "log" / "postfix.log"
        self.maildir = self.directory / "mail" / "Maildir"
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self.ca: Path | None = None  # the CA a client trusts, when the tests made the certificate

    # -- life cycle ---------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> PostfixInstance:
        """Configure, start and wait until every port answers 220; stop again on failure."""
        began = time.monotonic()
        for attempt in range(3):
            self._configure()
            with (self.directory / "log" / "master.out").open("wb") as output:
                self.process = subprocess.Popen(
                    [str(daemon_directory() / "master"), "-s", "-c", str(self.config_directory)],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=self._environment(),
                )
            self._watchdog = subprocess.Popen(
                [
                    "/bin/sh",
                    "-c",
                    _WATCHDOG,
                    "postfix-watchdog",
                    str(self.process.pid),
                    str(self.directory) if self._own_directory else "",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                self._wait_for_banners(began + timeout)
            except _PortTaken:
                # A free port was taken by someone else before the master could bind it.
                self._halt()
                if attempt < 2:
                    continue
                self._remove_directory()
                raise
            except BaseException:
                self.stop()
                raise
            break
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop Postfix and every process it started; remove the directory if it was made
        here."""
        self._halt()
        self._remove_directory()

    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- what the tests read ------------------------------------------------------------

    def log_text(self) -> str:
        """Postfix's log (maillog_file) so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first match of the regular expression `pattern` in the log, waiting for
        postlogd to write it; AssertionError with the log after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log_text(), re.MULTILINE)
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"not in the Postfix log within {timeout:g} s: {pattern!r}\n")
            time.sleep(0.05)

    def message_files(self) -> list[Path]:
        """The files of the messages delivered into the Maildir, oldest first."""
        files = [
            path
            for sub in ("new", "cur")
            if (self.maildir / sub).is_dir()
            for path in (self.maildir / sub).iterdir()
            if path.is_file()
        ]
        return sorted(files, key=lambda path: path.stat().st_mtime_ns)

    def messages(self) -> list[EmailMessage]:
        """The messages delivered into the Maildir, parsed, oldest first."""
        parsed: list[EmailMessage] = []
        for path in self.message_files():
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """The delivered messages once there are at least `count` of them."""
        deadline = time.monotonic() + timeout
        while len(self.message_files()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.message_files())} of {count} messages delivered in "
                    f"{timeout:g} s\n{self.log_text()[-4000:]}"
                )
            time.sleep(0.05)
        return self.messages()

    def postconf(self, *arguments: str) -> str:
        """`postconf -c <instance> ARGUMENTS`' output, e.g. to check an effective setting."""
        result = subprocess.run(
            [POSTCONF, "-c", str(self.config_directory), *arguments],
            capture_output=True,
            text=True,
            check=True,
            env=self._environment(),
        )
        return result.stdout

    # -- internals ------------------------------------------------------------------------

    def _halt(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            # Killed, not released through its stdin: it must not signal a group whose id
            # may be reused once our master has gone.
            watchdog.kill()
            watchdog.wait()
            if watchdog.stdin is not None:
                watchdog.stdin.close()
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            # What `postfix stop` does: SIGTERM to the master (pid/master.pid), which passes
            # it on to its children. The master is our child, so signal it directly.
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Children still exiting after their master, in its process group (session).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        self._reap_strays()

    def _remove_directory(self) -> None:
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _environment(self) -> dict[str, str]:
        # Our configuration directory only, whatever the caller's MAIL_CONFIG says.
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MAIL_")}
        environment["MAIL_CONFIG"] = str(self.config_directory)
        return environment

    def _configure(self) -> None:
        postfix = pwd.getpwnam("postfix")
        os.chmod(self.directory, 0o755)
        # The queue directory itself must exist for `postfix check`, which fills it in.
        for sub in ("etc", "etc/sasl", "log", "mail", "queue"):
            (self.directory / sub).mkdir(exist_ok=True)
        os.chown(self.directory / "mail", postfix.pw_uid, postfix.pw_gid)

        self.ports = {name: free_port(ipv6=self.ipv6 and name == "plain") for name in SERVICES}
        # free_port closes its probe socket: make sure no two services drew the same port.
        while len(set(self.ports.values())) < len(SERVICES):
            self.ports = {name: free_port(ipv6=self.ipv6 and name == "plain") for name in SERVICES}

        (self.config_directory / "main.cf").write_text(
            _MAIN.format(
                d=self.directory,
                hostname=self.hostname,
                domain=self.domain,
                protocols="ipv4, ipv6" if self.ipv6 else "ipv4",
                uid=postfix.pw_uid,
                gid=postfix.pw_gid,
                virtual_transport=self._virtual_transport(),
                cert=self.cert,
                key=self.key,
            )
        )
        (self.config_directory / "master.cf").write_text(_MASTER_BASE + self._smtpd_services())
        # Postfix re-reads a main.cf modified within the last second, 300 ms at a time, until
        # it is a second old (a guard against half-written files): two seconds at each start.
        past = time.time() - 10
        for path in self.config_directory.iterdir():
            os.utime(path, (past, past))
        self._write_sasldb(postfix)

        # `postfix check` creates the queue and data directories with Postfix's ownership
        # and modes (from the package's postfix-files) and verifies the configuration.
        checked = subprocess.run(
            [POSTFIX, "-c", str(self.config_directory), "check"],
            capture_output=True,
            text=True,
            check=False,
            env=self._environment(),
        )
        assert checked.returncode == 0, f"postfix check failed:\n{checked.stdout}{checked.stderr}"

    def _virtual_transport(self) -> str:
        if self.lmtp is None:
            return "virtual"
        host, port = self.lmtp
        # IP literals in brackets: an IPv6 address would otherwise be cut at its colons.
        literal = re.fullmatch(r"[\d.]+|[0-9a-fA-F:]*:[0-9a-fA-F:.]*", host)
        return f"lmtp:inet:[{host}]:{port}" if literal else f"lmtp:inet:{host}:{port}"

    def _smtpd_services(self) -> str:
        lines = []
        for name in SERVICES:
            addresses = [f"127.0.0.1:{self.ports[name]}"]
            if name == "plain" and self.ipv6:
                addresses.append(f"[::1]:{self.ports[name]}")
            options = "".join(f"\n  -o {option}" for option in _SERVICE_OPTIONS[name])
            lines += [f"{address} inet n - n - - smtpd{options}" for address in addresses]
        return "\n".join(lines) + "\n"

    def _write_sasldb(self, postfix: pwd.struct_passwd) -> None:
        sasl = self.config_directory / "sasl"
        sasldb = sasl / "sasldb2"
        (sasl / "smtpd.conf").write_text(_SASL_CONF.format(sasldb=sasldb))
        # Cyrus's sasldb splits "local@realm" at the last "@"; a bare name gets the realm
        # smtpd passes for it, smtpd_sasl_local_domain (= myhostname).
        local, at, realm = self.user.rpartition("@")
        if not at:
            local, realm = self.user, self.hostname
        created = subprocess.run(
            [SASLPASSWD2, "-f", str(sasldb), "-p", "-c", "-u", realm, local],
            input=self.password,
            capture_output=True,
            text=True,
            check=False,
        )
        assert created.returncode == 0, f"saslpasswd2 failed: {created.stderr}"
        # smtpd reads the database as the postfix user, not as root.
        os.chown(sasldb, 0, postfix.pw_gid)
        os.chmod(sasldb, 0o640)

    def _endpoints(self) -> list[tuple[str, str, int]]:
        endpoints = [(name, "127.0.0.1", port) for name, port in self.ports.items()]
        if self.ipv6:
            endpoints.append(("plain", "::1", self.ports["plain"]))
        return endpoints

    def _wait_for_banners(self, deadline: float) -> None:
        pending = self._endpoints()
        last_error = ""
        while pending:
            assert self.process is not None
            if self.process.poll() is not None:
                taken = [f"{n} [{h}]:{p}" for n, h, p in self._endpoints() if not _bindable(h, p)]
                if taken:
                    raise _PortTaken(f"port taken before Postfix bound it: {', '.join(taken)}")
                # The master logs its start-up errors to syslog (/dev/log) only: postlogd,
                # which writes maillog_file, is not running yet.
                raise AssertionError(f"Postfix exited ({self.process.returncode}):\n{self._why()}")
            name, host, port = pending[0]
            try:
                banner = read_banner(host, port, tls=name == "smtps", proxy=name == "proxy")
            except (OSError, ssl.SSLError) as exc:
                last_error = f"{name} [{host}]:{port}: {exc}"
            else:
                assert banner.startswith("220 "), f"{name} [{host}]:{port} answered {banner!r}"
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise AssertionError(f"Postfix not ready: {last_error}\n{self._why()}")
            time.sleep(0.05)

    def _why(self) -> str:
        master = self.directory / "log" / "master.out"
        output = master.read_text(errors="replace") if master.exists() else ""
        return f"{output}{self.log_text()[-4000:]}"

    def _reap_strays(self) -> None:
        """Kill any Postfix daemon of this instance still alive (one that left the master's
        process group): a program of Postfix's daemon directory whose environment names
        this instance's configuration directory. Nothing else is ever signalled."""
        daemons = f"{daemon_directory()}/".encode()
        marker = b"MAIL_CONFIG=" + str(self.config_directory).encode() + b"\0"
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ours = os.readlink(entry / "exe").encode().startswith(daemons) and (
                    marker in (entry / "environ").read_bytes()
                )
            except OSError:
                continue
            if ours:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)


PROBE_USER, PROBE_PASSWORD = "monitor@test.example", "postfix-sasl-pw"


def probe_target(factory: Callable[..., PostfixInstance], directory: Path) -> PostfixInstance:
    """A started Postfix for the probe's tests (one per test module, each with a log of its
    own), its certificate from a CA of the tests' own (`ca`), user PROBE_USER."""
    certificates = Certificates(directory)
    instance = factory(
        cert=certificates.cert, key=certificates.key, user=PROBE_USER, password=PROBE_PASSWORD
    )
    instance.ca = certificates.ca
    return instance


@pytest.fixture(scope="module")
def mta(
    postfix_factory: Callable[..., PostfixInstance], tmp_path_factory: pytest.TempPathFactory
) -> PostfixInstance:
    """`probe_target`'s Postfix, one per test module that imports this fixture (with
    `postfix_factory`)."""
    return probe_target(postfix_factory, tmp_path_factory.mktemp("postfix-pki"))


@pytest.fixture(scope="session")
def postfix_factory() -> Iterator[Callable[..., PostfixInstance]]:
    """``postfix_factory(cert=..., key=..., user=..., password=..., **PostfixInstance
    keywords)``: a started private Postfix, stopped at the end of the session."""
    started: list[PostfixInstance] = []

    def make(**kwargs: Any) -> PostfixInstance:
        instance = PostfixInstance(**kwargs)
        started.append(instance)
        return instance.start()

    yield make
    for instance in reversed(started):
        instance.stop()
