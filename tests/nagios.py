"""A real Nagios 4 core (Debian's nagios4-core) as the reader of our command file.

Started in a temporary directory with passive services only; tests write commands to its
FIFO and read back its `status.dat`. Skipped locally when Nagios is not installed, and a
failure under CI=true (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NAGIOS = shutil.which("nagios4") or "/usr/sbin/nagios4"

_MAIN = """\
log_file={d}/nagios.log
cfg_file={d}/objects.cfg
object_cache_file={d}/objects.cache
precached_object_file={d}/objects.precache
resource_file={d}/resource.cfg
status_file={d}/status.dat
status_update_interval=1
nagios_user={user}
nagios_group={group}
check_external_commands=1
command_file={d}/nagios.cmd
lock_file={d}/nagios.lock
temp_file={d}/nagios.tmp
temp_path={d}
check_result_path={d}/checkresults
check_result_reaper_frequency=1
max_check_result_reaper_time=2
retain_state_information=0
use_syslog=0
log_passive_checks=1
log_external_commands=1
interval_length=60
execute_service_checks=0
execute_host_checks=0
accept_passive_service_checks=1
enable_notifications=0
enable_event_handlers=0
enable_flap_detection=0
check_service_freshness=0
illegal_macro_output_chars=`~$&|'"<>
"""

_OBJECTS_HEAD = """\
define timeperiod {{
  timeperiod_name always
  alias always
  monday 00:00-24:00
  tuesday 00:00-24:00
  wednesday 00:00-24:00
  thursday 00:00-24:00
  friday 00:00-24:00
  saturday 00:00-24:00
  sunday 00:00-24:00
}}
define command {{
  command_name stale
  command_line /bin/true
}}
define contact {{
  contact_name nobody
  host_notifications_enabled 0
  service_notifications_enabled 0
  host_notification_period always
  service_notification_period always
  host_notification_options n
  service_notification_options n
  host_notification_commands stale
  service_notification_commands stale
}}
"""

_HOST = """\
define host {{
  host_name {host}
  address 127.0.0.1
  max_check_attempts 1
  check_period always
  contacts nobody
  notification_interval 0
  notification_period always
  active_checks_enabled 0
  passive_checks_enabled 1
}}
"""

_SERVICE = """\
define service {{
  host_name {host}
  service_description {service}
  check_command stale
  max_check_attempts 1
  check_interval 5
  retry_interval 1
  check_period always
  contacts nobody
  notification_interval 0
  notification_period always
  active_checks_enabled 0
  passive_checks_enabled 1
}}
"""


def require_nagios() -> None:
    if not os.path.exists(NAGIOS):
        message = f"Nagios 4 not installed ({NAGIOS}): apt-get install nagios4-core"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: the real command-file reader must be tested)")
        pytest.skip(message)


class Nagios:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.command_file = directory / "nagios.cmd"
        self.status_file = directory / "status.dat"
        self.process: subprocess.Popen[bytes] | None = None

    def services(self) -> dict[tuple[str, str], dict[str, str]]:
        """`servicestatus` blocks of status.dat, by (host, service)."""
        if not self.status_file.exists():
            return {}
        services: dict[tuple[str, str], dict[str, str]] = {}
        block: dict[str, str] | None = None
        for raw in self.status_file.read_text(errors="replace").splitlines():
            line = raw.strip()
            if line == "servicestatus {":
                block = {}
            elif line == "}" and block is not None:
                services[(block["host_name"], block["service_description"])] = block
                block = None
            elif block is not None and "=" in line:
                key, _, value = line.partition("=")
                block[key] = value
        return services

    def wait_for(
        self, predicate: object, timeout: float = 20.0
    ) -> dict[tuple[str, str], dict[str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            services = self.services()
            if callable(predicate) and predicate(services):
                return services
            if time.monotonic() > deadline:
                return services
            time.sleep(0.2)

    def log(self) -> str:
        path = self.directory / "nagios.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def nagios(services: list[tuple[str, str]]) -> Iterator[Nagios]:
    """Run Nagios with passive `services` until the block ends, in a directory of its own
    (outside pytest's, which the unprivileged nagios user cannot enter)."""
    require_nagios()
    directory = Path(tempfile.mkdtemp(prefix="smtp-checks-nagios-"))
    try:
        with _running(directory, services) as engine:
            yield engine
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def prepare(directory: Path, services: list[tuple[str, str]]) -> Path:
    """Write a Nagios configuration with passive `services` in `directory`, owned by the
    user Nagios runs as, and have Nagios verify it; its main file."""
    user = pwd.getpwnam("nagios") if _has_user("nagios") else pwd.getpwuid(os.getuid())
    (directory / "checkresults").mkdir(parents=True)
    hosts = sorted({host for host, _ in services})
    objects = _OBJECTS_HEAD.format() + "".join(_HOST.format(host=h) for h in hosts)
    objects += "".join(_SERVICE.format(host=h, service=s) for h, s in services)
    (directory / "objects.cfg").write_text(objects)
    (directory / "resource.cfg").write_text("")
    config = directory / "nagios.cfg"
    config.write_text(_MAIN.format(d=directory, user=user.pw_name, group=_group(user.pw_gid)))
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    checked = subprocess.run(
        [NAGIOS, "-v", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return config


@contextmanager
def _running(directory: Path, services: list[tuple[str, str]]) -> Iterator[Nagios]:
    config = prepare(directory, services)
    engine = Nagios(directory)
    engine.process = subprocess.Popen(
        [NAGIOS, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 15
        while not engine.command_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.command_file.exists(), engine.log()
        os.chmod(engine.command_file, 0o666)
        yield engine
    finally:
        engine.process.terminate()
        try:
            engine.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            engine.process.kill()
            engine.process.wait()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _group(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name
