"""A private, real Dovecot (IMAP, POP3, LMTP) for tests that read mail back from a mailbox.

The round-trip check sends a mail over SMTP and then looks for it over IMAP or POP3; its tests
need a real IMAP/POP3 server with known users and mailboxes. `DovecotInstance` configures and
starts Debian's Dovecot 2.3 in a temporary directory of its own and stops it afterwards:

- every listener on a free loopback port of its own (`ports`): `imap` (STARTTLS), `imaps`
  (implicit TLS), `pop3` (STLS), `pop3s` (implicit TLS) and `lmtp` (plain LMTP over TCP, for
  a real Postfix or `smtplib.LMTP` to deliver to);
- users given as `{username: password}`, mechanisms PLAIN and LOGIN (or `mechanisms=`),
  accepted only over TLS (implicit, or after STARTTLS/STLS);
- Maildir mailboxes with `INBOX`, `Junk` and `Spam` (and any `folders=` you add); `deliver()`
  drops a message straight into a folder's `new/` (no SMTP, no LMTP), `messages()` reads a
  folder back from disk;
- configuration (copies of the certificate and key included), base_dir, state_dir, mail and
  the log (`log_text()`) in that directory, which is deleted when the instance stops; nothing
  is written outside it, and no configuration outside it is read.

Use it as a context manager, or through `dovecot_fixture()` in a test module::

    @pytest.fixture(scope="module")
    def mail_tls(pki: Pki) -> tuple[Path, Path]:
        return pki.cert_paths["trusted"], pki.key_paths["trusted"]

    dovecot = dovecot_fixture({"alice": "secret"}, certificates="mail_tls", scope="module")

    def test_round_trip(dovecot: DovecotInstance) -> None:
        smtplib.LMTP("127.0.0.1", dovecot.ports["lmtp"]).sendmail(...)

Packages (install them in .ci/run; this module never installs anything)::

    if ! ls /usr/lib/dovecot/imap /usr/lib/dovecot/pop3 /usr/lib/dovecot/lmtp >/dev/null 2>&1; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -q >/dev/null
      apt-get install -y -q --no-install-recommends dovecot-imapd dovecot-pop3d dovecot-lmtpd
    fi

When they are missing the tests using this module are skipped, and fail under CI=true.

The system Dovecot: on a machine with systemd, installing these packages enables and starts
`dovecot.service` on 143/993/110/995 (in a container whose /usr/sbin/policy-rc.d exits 101 it
is not started). It need not be stopped: this instance reads only its own configuration
(`dovecot -c FILE`, no include of /etc/dovecot), listens only on its own free ports, and keeps
its sockets, pid file and state (base_dir, state_dir) in its temporary directory, so the two
never share anything.

Two things differ from a production server, on purpose or by necessity:

- Dovecot treats any connection whose client and server address are the same (127.0.0.1 to
  127.0.0.1) as "secured" and would accept a plaintext LOGIN before STARTTLS. The passdb here
  is keyed on Dovecot's `%{secured}` variable, which is `TLS` only for real TLS, so a login
  without TLS is refused ("authentication failed") even from 127.0.0.1. On 127.0.0.1 the
  plain ports still advertise AUTH=PLAIN (not LOGINDISABLED); pass `host="127.0.0.2"` (another
  loopback address on Linux) to get the exact production behaviour: LOGINDISABLED, and
  PRIVACYREQUIRED for a LOGIN without TLS.
- The failed-login delay and the per-IP penalty (anvil) are off, so that a wrong-password test
  does not slow down the tests after it (Dovecot still answers a failure after ~0.5 s).

Mail is owned by `nobody:nogroup` when the tests run as root (Dovecot refuses uid 0 for mail;
the services run as Debian's `dovecot` and `dovenull`), and by the current user otherwise;
then every Dovecot process runs as that user (tried as `nobody`).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any, Literal, NamedTuple

import pytest

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
LIBEXEC = Path("/usr/lib/dovecot")

#: The Debian package that provides each file this module needs.
_REQUIRED = {
    Path(DOVECOT): "dovecot-core",
    LIBEXEC / "imap": "dovecot-imapd",
    LIBEXEC / "pop3": "dovecot-pop3d",
    LIBEXEC / "lmtp": "dovecot-lmtpd",
}
PACKAGES = ("dovecot-imapd", "dovecot-pop3d", "dovecot-lmtpd")

PROTOCOLS = ("imap", "imaps", "pop3", "pop3s", "lmtp")
DEFAULT_FOLDERS = ("Junk", "Spam")

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._+-]*(@[a-z0-9][a-z0-9.-]*)?")
_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _-]*")
_GREETINGS = {"imap": b"* OK", "pop3": b"+OK", "lmtp": b"220 "}
_deliveries = itertools.count()

_CONFIG = Template("""\
# Written by tests/dovecot.py: a private instance, nothing shared with /etc/dovecot.
instance_name = $instance
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = imap pop3 lmtp
listen = $host
shutdown_clients = yes

default_internal_user = $internal_user
default_internal_group = $internal_group
default_login_user = $login_user
mail_uid = $mail_uid
mail_gid = $mail_gid
first_valid_uid = 1
first_valid_gid = 1
mail_privileged_group =
mail_location = maildir:~/Maildir

ssl = yes
ssl_cert = <$dir/tls/cert.pem
ssl_key = <$dir/tls/key.pem
# No cleartext authentication without TLS (LOGINDISABLED), and see the passdb below.
disable_plaintext_auth = yes
auth_mechanisms = $mechanisms
auth_username_format = %Lu
# Tests make deliberate failures: answer them at once (the auth process still batches
# failures every 0.5 s).
auth_failure_delay = 0

# Dovecot counts 127.0.0.1 -> 127.0.0.1 as "secured" and would take a password before
# STARTTLS; %{secured} is "TLS" only on a real TLS connection, and only "TLS-<user>" entries
# exist, so a password is accepted over TLS only.
passdb {
  driver = passwd-file
  args = username_format=%{secured}-%u $dir/passdb
}
# Exact names first; then the local part, so LMTP's RCPT TO:<alice@any.domain> (what Postfix
# sends) reaches alice ("+detail" is dropped by recipient_delimiter).
userdb {
  driver = passwd-file
  args = $dir/userdb
}
userdb {
  driver = passwd-file
  args = username_format=%n $dir/userdb
}

namespace inbox {
  inbox = yes
$mailboxes}

service imap-login {
  inet_listener imap {
    address = $host
    port = $imap
  }
  inet_listener imaps {
    address = $host
    port = $imaps
    ssl = yes
  }
$login_chroot}
service pop3-login {
  inet_listener pop3 {
    address = $host
    port = $pop3
  }
  inet_listener pop3s {
    address = $host
    port = $pop3s
    ssl = yes
  }
$login_chroot}
service lmtp {
  inet_listener lmtp {
    address = $host
    port = $lmtp
  }
}
service anvil {
  # Without this socket the auth process disables its per-IP penalty (up to 15 s after
  # failed logins, for every later login from 127.0.0.1).
  unix_listener anvil-auth-penalty {
    mode = 0
  }
$login_chroot}
""")

_MAILBOX = Template("""\
  mailbox "$name" {
    auto = subscribe
$special  }
""")


def require_dovecot() -> None:
    """Skip the test when Dovecot's IMAP, POP3 or LMTP server is not installed; fail under
    CI=true, where .ci/run installs them."""
    missing = sorted({package for path, package in _REQUIRED.items() if not path.exists()})
    if missing:
        message = (
            f"Dovecot not installed (missing {', '.join(missing)}): "
            f"apt-get install {' '.join(PACKAGES)}"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: the mailbox tests must run against real Dovecot)")
        pytest.skip(message)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def orphan_proof(argv: list[str]) -> list[str]:
    """`argv`, killed by the kernel if the test process dies, however it dies (util-linux
    `setpriv --pdeathsig`, when installed). Dovecot's master never changes its user, so the
    signal holds; its children exit by themselves when the master is gone."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


class _Accounts(NamedTuple):
    """Who owns the mail and who runs Dovecot's processes."""

    mail_uid: int
    mail_gid: int
    internal_user: str  # auth, anvil, stats...
    internal_group: str
    login_user: str  # imap-login, pop3-login
    chroot: bool  # login processes chrooted (root only)


def _accounts() -> _Accounts:
    """Under root: mail owned by nobody:nogroup (Dovecot refuses uid 0 for mail), Debian's
    `dovecot` and `dovenull` users (created by dovecot-core) for the services. Otherwise the
    current user for everything: Dovecot cannot switch users, and chroot needs root."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        return _Accounts(nobody.pw_uid, nobody.pw_gid, "dovecot", "dovecot", "dovenull", True)
    import grp

    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return _Accounts(os.geteuid(), os.getegid(), user, group, user, False)


class DovecotInstance:
    """One private Dovecot; see the module docstring.

    Attributes:
        users: username -> password.
        host: the loopback address every listener is bound to.
        ports: "imap", "imaps", "pop3", "pop3s", "lmtp" -> port.
        domain: the domain of `address()` (LMTP accepts any domain for a user without one).
        folders: the folders every mailbox has besides INBOX.
        directory: the temporary directory holding everything (deleted by `stop()`).
        config_path: the configuration file, for `dovecot -c` / `doveadm -c`.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        domain: str = "example.test",
        folders: Sequence[str] = DEFAULT_FOLDERS,
        mechanisms: Sequence[str] = ("plain", "login"),
        start_timeout: float = 10.0,
    ) -> None:
        if not users:
            raise ValueError("at least one user")
        for name, password in users.items():
            if not _USERNAME.fullmatch(name):
                raise ValueError(f"username {name!r}: lower-case letters, digits, ._+- and @")
            if not password or "\n" in password:
                raise ValueError(f"password of {name!r}: not empty, no newline")
        for folder in folders:
            if not _FOLDER.fullmatch(folder) or folder.upper() == "INBOX":
                raise ValueError(f"folder {folder!r}: letters, digits, space, _ and -")
        self.users = dict(users)
        self.cert = Path(cert)
        self.key = Path(key)
        self.host = host
        self.domain = domain
        self.folders = tuple(folders)
        self.mechanisms = tuple(mechanisms)
        self.start_timeout = start_timeout
        self.ports: dict[str, int] = {}
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._accounts = _accounts()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> DovecotInstance:
        """Write the configuration and mailboxes, start Dovecot in the foreground and wait
        until every port answers with its greeting. Retries with new ports if one was taken
        between choosing and binding it."""
        require_dovecot()
        assert self.process is None, "already started"
        began = time.monotonic()
        # Outside pytest's tmp_path: the login (dovenull) and mail (nobody) users must be able
        # to enter it, and Dovecot's socket paths must stay short.
        self.directory = Path(tempfile.mkdtemp(prefix="smtp-checks-dovecot-"))
        try:
            self.directory.chmod(0o755)
            self._prepare()
            for attempt in itertools.count(1):
                self.ports = self._free_ports()
                self._write_config()
                if self._launch():
                    break
                if attempt == 3:
                    raise RuntimeError(f"Dovecot did not start:\n{self._diagnostics()}")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop Dovecot (SIGTERM to the master's process group), kill whatever is left of
        that group after a while, delete the directory. Never raises."""
        with contextlib.suppress(Exception):
            self._stop_processes()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> DovecotInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def config_path(self) -> Path:
        return self._dir / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self._dir / "dovecot.log"

    # --- mailboxes --------------------------------------------------------------------------

    def address(self, user: str) -> str:
        """The e-mail address LMTP (or Postfix) delivers to `user`'s INBOX."""
        return user if "@" in user else f"{user}@{self.domain}"

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        """The Maildir (with cur/, new/, tmp/) of `user`'s `folder` (Maildir++ layout)."""
        if user not in self.users:
            raise KeyError(f"no such user: {user!r}")
        root = self._dir / "mail" / user / "Maildir"
        if folder.upper() == "INBOX":
            return root
        if folder not in self.folders:
            raise KeyError(f"no such folder: {folder!r} (folders: INBOX, {self.folders})")
        return root / f".{folder}"

    def deliver(self, user: str, raw_message: bytes, folder: str = "INBOX") -> Path:
        """Drop `raw_message` into `user`'s `folder` as a new, unseen message, the way a local
        delivery agent does (tmp/ then rename into new/); Dovecot sees it at its next sync.
        Line endings are stored as LF, like Dovecot's own deliveries. The file."""
        maildir = self.maildir(user, folder)
        now = time.time_ns() // 1000
        host = socket.gethostname().replace("/", "_").replace(":", "_")
        # The usual Maildir name: seconds, then what makes it unique.
        name = f"{now // 1_000_000}.M{now % 1_000_000:06d}P{os.getpid()}Q{next(_deliveries)}.{host}"
        temporary = maildir / "tmp" / name
        temporary.write_bytes(raw_message.replace(b"\r\n", b"\n"))
        self._own(temporary)
        final = maildir / "new" / name
        os.rename(temporary, final)
        return final

    def messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """Every message of `user`'s `folder` as stored (new/ and cur/; LF line endings,
        with the headers LMTP added), oldest first. Read from disk, not through Dovecot:
        an expunged message is gone from here as soon as the EXPUNGE/QUIT is answered."""
        maildir = self.maildir(user, folder)
        files = [path for sub in ("new", "cur") for path in (maildir / sub).iterdir()]
        # Delivery order: the files' times (a move from new/ to cur/ or a flag change renames
        # the file and keeps its time), then the names, which begin with the delivery time.
        files.sort(key=_delivery_order)
        found = []
        for path in files:
            with contextlib.suppress(FileNotFoundError):  # expunged while we were reading
                found.append(path.read_bytes())
        return found

    def log_text(self) -> str:
        """Dovecot's log so far (every process logs to it through the log service)."""
        path = self.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def doveadm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `doveadm -c <this config> ARGS` (e.g. "search", "-u", "alice", "ALL")."""
        return subprocess.run(
            [DOVEADM, "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=30,
        )

    # --- internals --------------------------------------------------------------------------

    @property
    def _dir(self) -> Path:
        if self.directory is None:
            raise RuntimeError("Dovecot instance not started")
        return self.directory

    def _prepare(self) -> None:
        directory = self._dir
        for sub in ("run", "state", "tls", "mail"):
            (directory / sub).mkdir()
        # Our copies: read at start by Dovecot's config process, private to this directory,
        # and still there if the caller's PKI directory goes first.
        tls = directory / "tls"
        shutil.copyfile(self.cert, tls / "cert.pem")
        shutil.copyfile(self.key, tls / "key.pem")
        (tls / "key.pem").chmod(0o600)
        accounts = self._accounts
        passdb, userdb = [], []
        for name, password in sorted(self.users.items()):
            home = directory / "mail" / name
            # Base64 of the password: any character but a newline fits in the colon-separated
            # file.
            encoded = base64.b64encode(password.encode()).decode()
            passdb.append(f"TLS-{name}:{{PLAIN.b64}}{encoded}\n")
            userdb.append(f"{name}::{accounts.mail_uid}:{accounts.mail_gid}::{home}::\n")
            for folder in ("INBOX", *self.folders):
                maildir = self.maildir(name, folder)
                for sub in ("cur", "new", "tmp"):
                    (maildir / sub).mkdir(parents=True, exist_ok=True)
                if folder != "INBOX":
                    (maildir / "maildirfolder").touch()
        (directory / "passdb").write_text("".join(passdb))
        (directory / "userdb").write_text("".join(userdb))
        for path in (directory / "passdb", directory / "userdb"):
            path.chmod(0o644)  # the auth process runs as the internal user (dovecot)
        for path in [directory / "mail", *(directory / "mail").rglob("*")]:
            self._own(path)

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self._accounts.mail_uid, self._accounts.mail_gid)

    def _free_ports(self) -> dict[str, int]:
        ports: dict[str, int] = {}
        while len(set(ports.values())) < len(PROTOCOLS):
            ports = {protocol: free_port(self.host) for protocol in PROTOCOLS}
        return ports

    def _write_config(self) -> None:
        accounts = self._accounts
        mailboxes = "".join(
            _MAILBOX.substitute(
                name=folder, special="    special_use = \\Junk\n" if folder == "Junk" else ""
            )
            for folder in self.folders
        )
        self.config_path.write_text(
            _CONFIG.substitute(
                instance=f"smtp-checks-{self._dir.name.rsplit('-', 1)[-1]}",
                dir=self._dir,
                host=self.host,
                internal_user=accounts.internal_user,
                internal_group=accounts.internal_group,
                login_user=accounts.login_user,
                login_chroot="" if accounts.chroot else "  chroot =\n",
                mail_uid=accounts.mail_uid,
                mail_gid=accounts.mail_gid,
                mailboxes=mailboxes,
                mechanisms=" ".join(self.mechanisms),
                **self.ports,
            )
        )

    def _launch(self) -> bool:
        """Start the master and wait for every greeting. False if a port was taken in the
        meantime (try again with others); raises on any other failure."""
        self.log_path.unlink(missing_ok=True)
        with (self._dir / "dovecot.stderr").open("wb") as stderr:
            # -F: the master stays in the foreground as our child (its pid is ours to stop);
            # its own session, so its whole process group can be killed.
            self.process = subprocess.Popen(
                orphan_proof([DOVECOT, "-F", "-c", str(self.config_path)]),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        waiting = list(PROTOCOLS)
        while waiting:
            if self.process.poll() is not None:
                # A port taken since we chose it (Dovecot retries it for ~2 s first).
                if "Address already in use" in self._diagnostics():
                    self._stop_processes()
                    return False
                raise RuntimeError(f"Dovecot exited at start:\n{self._diagnostics()}")
            if _greets(self.host, self.ports[waiting[0]], waiting[0]):
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Dovecot did not greet on {waiting} within {self.start_timeout:g} s:\n"
                    f"{self._diagnostics()}"
                )
            time.sleep(0.02)
        return True

    def _stop_processes(self) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            # SIGTERM is what `doveadm stop` sends the master; sent to the whole group, every
            # child stops at once too, instead of the master waiting ~1 s for them.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # A child may still be exiting after the master (zombies aside): wait a little for
        # the group to empty, then kill what is left.
        deadline = time.monotonic() + 5
        while process_group_alive(process.pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                break
            time.sleep(0.02)

    def _diagnostics(self) -> str:
        parts = []
        for name in ("dovecot.stderr", "dovecot.log"):
            path = self._dir / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts) or "(no output)"


def _greets(host: str, port: int, protocol: str) -> bool:
    """Whether `protocol`'s greeting arrives on host:port now (TLS first on imaps/pop3s; the
    certificate is not checked here, the tests do that)."""
    try:
        with socket.create_connection((host, port), timeout=2) as raw:
            if protocol.endswith("s"):
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                with context.wrap_socket(raw, server_hostname=host) as tls:
                    greeting = tls.recv(512)
            else:
                greeting = raw.recv(512)
    except OSError:
        return False
    return greeting.startswith(_GREETINGS[protocol.rstrip("s")])


def _delivery_order(path: Path) -> tuple[int, str]:
    try:
        when = path.stat().st_mtime_ns
    except FileNotFoundError:  # expunged meanwhile; left out when read
        when = 0
    return when, path.name


def process_group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is still in process group `pgid`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # After "(comm)": state, ppid, pgrp, ...; comm itself may contain spaces.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def dovecot_fixture(
    users: Mapping[str, str],
    *,
    certificates: str,
    scope: Literal["session", "package", "module", "class", "function"] = "function",
    name: str | None = None,
    **options: Any,
) -> Callable[..., Iterator[DovecotInstance]]:
    """A pytest fixture yielding a started `DovecotInstance` with `users`, stopped at its
    teardown. `certificates` names a fixture that returns the (certificate chain, key) file
    paths; `options` go to `DovecotInstance`. Assign it in a test module (or a conftest)::

        dovecot = dovecot_fixture({"alice": "secret"}, certificates="mail_tls")

    The end of Dovecot's log is printed at teardown: pytest shows it for failing tests.
    """

    def fixture(request: pytest.FixtureRequest) -> Iterator[DovecotInstance]:
        cert, key = request.getfixturevalue(certificates)
        with DovecotInstance(users, cert, key, **options) as instance:
            try:
                yield instance
            finally:
                print(f"--- Dovecot log ({instance.log_path})\n{instance.log_text()[-6000:]}")

    return pytest.fixture(scope=scope, name=name)(fixture)
