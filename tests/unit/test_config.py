"""The config file: the brief's example loads, the cascade, and every refusal named precisely."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from smtp_checks.shared.config import (
    Config,
    ConfigError,
    ConfigProblem,
    ScheduledCheck,
    SecretRef,
    load_config,
    parse_config,
    rate_per_minute,
)
from smtp_checks.shared.probe.spec import Mode, TlsMode

DESIGN_EXAMPLE = """\
broker_url: redis://127.0.0.1:6379/0    # omitted: the embedded default of `run`
defaults:                 # for every check unless overridden on the host or the check
  interval: 60            # seconds between runs
  timeout: 30             # seconds for the whole check
  port: 25
  tls: starttls           # starttls | ssl | none   (the plugin's layer tls | ssl | none)
  verify_tls: true
sites:
  paris: {rate_limit: 600/m}          # per worker of the site
  lyon: {}
target_limits: {max_concurrent: 2, max_per_minute: 30}   # per SMTP server, across all workers
hosts:
  - name: mx1                         # the Centreon host name
    address: 192.0.2.10
    site: paris
    port: 587
    username: monitor@example.com
    password: env:MX1_SMTP_PASSWORD   # a reference (env:NAME or file:PATH), resolved on the worker; plain text is refused
    checks:
      login:   {warning: "2", critical: "5"}             # service defaults to SMTP-Login
      message: {from: monitor@example.com, to: probe@example.com, interval: 300}   # service SMTP-Message
centreon:
  forwarders:
    - {type: command_file, path: /var/lib/centreon-engine/rw/centengine.cmd}
    - {type: api_v2, url: https://centreon.example.com/centreon/api/latest, username: api, password: env:CENTREON_API_PASSWORD}
  resend_interval: 300    # seconds: forward the current state at least this often (freshness)
"""

MINIMAL = """\
sites: {paris: {}}
hosts:
  - name: mx1
    address: 192.0.2.10
    site: paris
    checks: {login: {}}
"""


def write(tmp_path: Path, text: str, name: str = "smtp-checks.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def locations(path: Path) -> dict[str, str]:
    return {problem.location: problem.reason for problem in problems_of(path)}


def by_id(config: Config) -> dict[str, ScheduledCheck]:
    return {check.check_id: check for check in config.scheduled_checks()}


@pytest.fixture(autouse=True)
def _no_ambient_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("SMTP_CHECKS_"):
            monkeypatch.delenv(name)


def test_the_design_example_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DESIGN_EXAMPLE))
    assert config.broker_url == "redis://127.0.0.1:6379/0"
    assert set(config.sites) == {"paris", "lyon"}
    assert config.sites["paris"].rate_limit == "600/m"
    assert config.target_limits.max_concurrent == 2
    assert [f.type for f in config.centreon.forwarders] == ["command_file", "api_v2"]
    assert config.centreon.resend_interval == 300

    checks = by_id(config)
    assert list(checks) == ["mx1/login", "mx1/message"]
    login, message = checks["mx1/login"], checks["mx1/message"]
    assert (login.service, login.mode, login.site) == ("SMTP-Login", Mode.LOGIN, "paris")
    assert (login.address, login.port, login.tls) == ("192.0.2.10", 587, TlsMode.STARTTLS)
    assert (login.timeout, login.interval, login.verify_tls) == (30, 60, True)
    assert (login.warning, login.critical) == ("2", "5")
    assert login.thresholds.critical is not None
    assert login.password == SecretRef("env", "MX1_SMTP_PASSWORD")
    assert str(login.password) == "env:MX1_SMTP_PASSWORD"
    assert login.username == "monitor@example.com"
    assert login.message is None
    assert (message.service, message.interval, message.port) == ("SMTP-Message", 300, 587)
    assert message.message is not None
    assert message.message.sender == "monitor@example.com"
    assert message.message.to == ("probe@example.com",)


def test_the_cascade_goes_defaults_then_host_then_check(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """\
            defaults: {interval: 120, timeout: 20, tls: none, verify_tls: true, ca_file: /ca.pem}
            sites: {s: {}}
            hosts:
              - name: plain
                address: a
                site: s
                checks: {login: {}}
              - name: hostwide
                address: b
                site: s
                tls: ssl
                timeout: 10
                verify_tls: false
                checks:
                  login: {}
                  message:
                    from: m@x
                    to: [p@x, q@x]
                    cc: c@x
                    subject: probe
                    reply_to: r@x
                    tls: starttls
                    port: 2525
                    interval: 600
                    timeout: 40
                    verify_tls: true
                    service: SMTP-Delivery
            """,
        )
    )
    checks = by_id(config)
    plain = checks["plain/login"]
    assert (plain.tls, plain.port, plain.timeout, plain.interval) == (TlsMode.NONE, 25, 20, 120)
    assert (plain.verify_tls, plain.ca_file) == (True, "/ca.pem")
    hostwide = checks["hostwide/login"]
    # ssl without a port anywhere: the implicit-TLS port
    assert (hostwide.tls, hostwide.port, hostwide.timeout, hostwide.verify_tls) == (
        TlsMode.IMPLICIT,
        465,
        10,
        False,
    )
    message = checks["hostwide/message"]
    assert (message.tls, message.port, message.timeout, message.interval) == (
        TlsMode.STARTTLS,
        2525,
        40,
        600,
    )
    assert message.verify_tls is True
    assert message.service == "SMTP-Delivery"
    assert message.message is not None
    assert message.message.to == ("p@x", "q@x")
    assert message.message.cc == ("c@x",)
    assert message.message.recipients == ("p@x", "q@x", "c@x")
    assert (message.message.subject, message.message.reply_to) == ("probe", "r@x")


def test_a_scheduled_check_is_frozen(tmp_path: Path) -> None:
    check = load_config(write(tmp_path, MINIMAL)).scheduled_checks()[0]
    with pytest.raises(AttributeError):
        check.port = 1  # type: ignore[misc]


def test_an_empty_check_or_site_means_the_defaults(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """\
            sites:
              paris:
            hosts:
              - {name: mx1, address: a, site: paris, checks: {login: }}
            """,
        )
    )
    assert [c.check_id for c in config.scheduled_checks()] == ["mx1/login"]


def host_config(host_lines: str, extra: str = "") -> str:
    return (
        "sites: {paris: {}}\nhosts:\n" + textwrap.indent(textwrap.dedent(host_lines), "  ") + extra
    )


@pytest.mark.parametrize(
    ("host", "location", "reason"),
    [
        (
            "- {name: mx1, address: a, site: paris, password: hunter2, checks: {login: {}}}",
            "hosts[0].password",
            "plain-text passwords are refused",
        ),
        (
            "- {name: mx1, address: a, site: paris, password: 'env:not a name', checks: {login: {}}}",
            "hosts[0].password",
            "env:NAME needs a variable name",
        ),
        (
            "- {name: mx1, address: a, site: paris, checks: {login: {warning: '2x'}}}",
            "hosts[0].checks.login.warning",
            "Wrong warning threshold '2x'.",
        ),
        (
            "- {name: mx1, address: a, site: paris, checks: {login: {critical: 'x:y'}}}",
            "hosts[0].checks.login.critical",
            "Wrong critical threshold 'x:y'.",
        ),
        (
            "- {name: 'mx;1', address: a, site: paris, checks: {login: {}}}",
            "hosts[0].name",
            "must not contain ';'",
        ),
        (
            '- {name: "mx\\n1", address: a, site: paris, checks: {login: {}}}',
            "hosts[0].name",
            "line break",
        ),
        (
            "- {name: mx1, address: a, site: paris, checks: {login: {service: 'A;B'}}}",
            "hosts[0].checks.login.service",
            "must not contain ';'",
        ),
        (
            "- {name: mx1, address: a, site: rome, checks: {login: {}}}",
            "hosts[0].site",
            "unknown site 'rome' (sites: paris)",
        ),
        (
            "- {name: mx1, address: a, site: paris, checks: {message: {to: p@x}}}",
            "hosts[0].checks.message.from",
            "required",
        ),
        (
            "- {name: mx1, address: a, site: paris, checks: {message: {from: m@x}}}",
            "hosts[0].checks.message.to",
            "required",
        ),
        (
            "- {name: mx1, address: a, site: paris, checks: {message: {from: m@x, to: []}}}",
            "hosts[0].checks.message.to",
            "at least 1 item",
        ),
        # The probe's rules, as `smtp-checks check` applies them (shared/probe/validation.py).
        (
            "- {name: mx1, address: a, site: paris, timeout: .inf, checks: {login: {}}}",
            "hosts[0].timeout",
            "finite number",
        ),
        (
            "- {name: mx1, address: a, site: paris, checks: {message: {from: m@x, to: [probe]}}}",
            "hosts[0].checks.message.to[0]",
            "'probe' is not a mail address (local@domain)",
        ),
        (
            "- {name: mx1, address: 'a..b', site: paris, checks: {login: {}}}",
            "hosts[0].address",
            "'a..b' has an empty label (two dots in a row)",
        ),
        (
            "- {name: mx1, address: a, site: paris, checks: {message: {from: m@x, to: p@x,"
            ' subject: "a\\u2028b"}}}',
            "hosts[0].checks.message.subject",
            "must be one line",
        ),
        (
            "- {name: mx1, address: a, site: paris, checks: {login: {interval: 10}}}",
            "hosts[0].checks.login",
            "interval 10s is shorter than the timeout 30s",
        ),
        (
            "- {name: mx1, address: a, site: paris, timeout: 90, checks: {login: {}}}",
            "hosts[0].checks.login",
            "interval 60s is shorter than the timeout 90s",
        ),
        (
            "- {name: mx1, address: a, site: paris, checks: {login: {prot: 25}}}",
            "hosts[0].checks.login.prot",
            "unknown key",
        ),
        (
            "- {name: mx1, address: a, site: paris, checks: {logn: {}}}",
            "hosts[0].checks.logn",
            "unknown key",
        ),
        (
            "- {name: mx1, address: a, site: paris, port: 70000, checks: {login: {}}}",
            "hosts[0].port",
            "less than or equal to 65535",
        ),
        (
            "- {name: mx1, address: a, site: paris, tls: tls, checks: {login: {}}}",
            "hosts[0].tls",
            "'starttls', 'ssl' or 'none'",
        ),
        (
            "- {name: mx1, address: a, site: paris,"
            " checks: {login: {service: S}, message: {service: S, from: m@x, to: p@x}}}",
            "hosts[0].checks.message.service",
            "service 'S' is also the login check's",
        ),
    ],
)
def test_each_refusal_names_file_location_and_reason(
    tmp_path: Path, host: str, location: str, reason: str
) -> None:
    path = write(tmp_path, host_config(host))
    problems = problems_of(path)
    assert [p.location for p in problems] == [location]
    assert reason in problems[0].reason
    assert str(problems[0]).startswith(f"{path}: {location}: ")


def test_a_duplicate_host_is_a_duplicate_host_and_check(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        host_config(
            """\
            - {name: mx1, address: a, site: paris, checks: {login: {}}}
            - {name: mx2, address: b, site: paris, checks: {login: {}}}
            - {name: mx1, address: c, site: paris, checks: {message: {from: m@x, to: p@x}}}
            """
        ),
    )
    assert locations(path) == {
        "hosts[2].name": "duplicate host 'mx1' (also hosts[0]): "
        "each (host, check) must be configured once"
    }


def test_the_password_text_never_appears_in_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        host_config(
            "- {name: mx1, address: a, site: paris, password: S3cr3t-pw, checks: {login: {}}}",
            "\ncentreon: {forwarders: [{type: api_v1, url: 'https://c', username: u,"
            " password: 'Other-S3cret'}]}\n",
        ),
    )
    text = "\n".join(str(p) for p in problems_of(path))
    assert "centreon.forwarders[0].password" in text
    assert "S3cr3t" not in text


def test_site_and_forwarder_refusals(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sites: {paris: {rate_limit: 600/minute}, 'bad site': {}, lyon: {rate_limit: 0/s}}
        target_limits: {max_concurrent: 0}
        hosts: []
        centreon:
          forwarders:
            - {type: api_v3}
            - {path: /x}
            - {type: api_v2, url: 'ftp://x', username: u, password: env:P, extra: 1}
            - {type: command_file}
          resend_interval: -1
        """,
    )
    found = locations(path)
    assert set(found) == {
        "sites.paris.rate_limit",
        "sites.bad site",
        "sites.lyon.rate_limit",
        "target_limits.max_concurrent",
        "centreon.forwarders[0].type",
        "centreon.forwarders[1].type",
        "centreon.forwarders[2].url",
        "centreon.forwarders[2].extra",
        "centreon.forwarders[3].path",
        "centreon.resend_interval",
    }
    assert "N/s, N/m or N/h" in found["sites.paris.rate_limit"]
    assert "unknown type 'api_v3'" in found["centreon.forwarders[0].type"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        defaults: {interval: 60, timeout: 30, colour: blue}
        sites: {paris: {}}
        hosts:
          - name: mx1
            address: 192.0.2.10
            site: paris
            password: plain-text
            checks:
              login: {warning: nope}
              message: {from: monitor@example.com, interval: 300}
          - {name: mx2, address: b, site: rome, checks: {login: {interval: 5}}}
          - {name: mx2, address: c, site: paris, checks: {login: {}}}
        """,
    )
    assert set(locations(path)) == {
        "defaults.colour",
        "hosts[0].password",
        "hosts[0].checks.login.warning",
        "hosts[0].checks.message.to",
        "hosts[1].site",
        "hosts[2].name",
    }


def test_rules_across_fields_still_run_when_defaults_are_valid(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sites: {paris: {}}
        hosts:
          - {name: mx1, address: a, site: nowhere, password: pw, checks: {login: {}}}
          - {name: mx2, address: b, site: paris, checks: {login: {interval: 5}}}
        centreon: {resend_interval: 0}
        """,
    )
    assert set(locations(path)) == {
        "hosts[0].password",
        "hosts[0].site",
        "hosts[1].checks.login",
        "centreon.resend_interval",
    }


def test_environment_overrides_top_level_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, DESIGN_EXAMPLE)
    monkeypatch.setenv("SMTP_CHECKS_BROKER_URL", "amqp://guest@rabbit:5672//")
    monkeypatch.setenv("SMTP_CHECKS_REDIS_URL", "redis://state:6379/1")
    monkeypatch.setenv("SMTP_CHECKS_TARGET_LIMITS", '{"max_concurrent": 5}')
    config = load_config(path)
    assert config.broker_url == "amqp://guest@rabbit:5672//"
    assert config.state_redis_url == "redis://state:6379/1"
    assert (config.target_limits.max_concurrent, config.target_limits.max_per_minute) == (5, 30)


def test_a_broker_other_than_redis_needs_redis_url(tmp_path: Path) -> None:
    path = write(tmp_path, "broker_url: amqp://guest@rabbit:5672//\n" + MINIMAL)
    assert [(p.location, p.reason) for p in problems_of(path)] == [
        (
            "redis_url",
            "required when the broker is not Redis (per-target limits and state live in Redis)",
        )
    ]


def test_a_redis_broker_is_also_the_state_redis(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "broker_url: redis://127.0.0.1:6379/3\n" + MINIMAL))
    assert config.state_redis_url == "redis://127.0.0.1:6379/3"
    assert config.visibility_timeout == 600


def test_an_environment_override_is_validated_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_CHECKS_TARGET_LIMITS", "not json")
    problems = problems_of(write(tmp_path, MINIMAL))
    assert [p.location for p in problems] == ["environment SMTP_CHECKS_TARGET_LIMITS"]
    assert "not json" not in problems[0].reason
    monkeypatch.setenv("SMTP_CHECKS_TARGET_LIMITS", '{"max_concurrent": 0}')
    assert list(locations(write(tmp_path, MINIMAL))) == ["target_limits.max_concurrent"]


def test_broker_url_may_be_omitted(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL)).broker_url is None


def test_a_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "sites: {paris: {}}\nhosts:\n  - name: [mx1\n")
    (problem,) = problems_of(path)
    assert problem.file == str(path)
    assert problem.location.startswith("line ")
    assert ", column " in problem.location
    assert problem.reason.startswith("YAML: ")


def test_a_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "sites: {lyon: {}}\n")
    (problem,) = problems_of(path)
    assert problem.location == "line 7, column 1"
    assert "duplicate key 'sites'" in problem.reason


def test_an_unknown_top_level_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "brokr_url: redis://x\n")
    assert locations(path) == {"brokr_url": "unknown key"}


@pytest.mark.parametrize("text", ["", "- a list\n", "just text\n"])
def test_a_file_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    (problem,) = problems_of(write(tmp_path, text))
    assert problem.location == ""
    assert "mapping" in problem.reason


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "absent.yaml")
    assert str(problem) == f"{tmp_path / 'absent.yaml'}: cannot read: No such file or directory"


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path)
    assert "cannot read" in problem.reason


def test_model_validate_alone_refuses_an_inconsistent_config() -> None:
    data = {
        "sites": {"paris": {}},
        "hosts": [{"name": "mx1", "address": "a", "site": "rome", "checks": {"login": {}}}],
    }
    with pytest.raises(ValueError, match="unknown site 'rome'"):
        Config.model_validate(data)
    with pytest.raises(ConfigError, match=r"^x\.yaml: hosts\[0\]\.site: unknown site"):
        parse_config(data, "x.yaml")


@pytest.mark.parametrize(
    ("text", "per_minute"),
    [("600/m", 600), ("10/s", 600), ("120/h", 2), ("5", 300), ("1.5/s", 90)],
)
def test_rate_limits_in_celery_syntax(text: str, per_minute: float) -> None:
    assert rate_per_minute(text) == pytest.approx(per_minute)


@pytest.mark.parametrize("text", ["env:", "file:", "secret", "ENV:X", "vault:x"])
def test_secret_references_refused(text: str) -> None:
    with pytest.raises(ValueError):
        SecretRef.parse(text)


def test_secret_references_accepted() -> None:
    assert SecretRef.parse("file:/etc/pw") == SecretRef("file", "/etc/pw")
    assert str(SecretRef.parse("env:A_1")) == "env:A_1"


def test_visibility_timeout_must_outlast_the_longest_check_twice(tmp_path: Path) -> None:
    path = write(tmp_path, "visibility_timeout: 50\ndefaults: {timeout: 30}\n" + MINIMAL)
    assert [(p.location, p.reason) for p in problems_of(path)] == [
        (
            "visibility_timeout",
            "50s is less than twice the longest check timeout (30s): a check still running "
            "would be delivered again",
        )
    ]


def test_api_v2_takes_a_login_or_a_token_never_both_nor_neither(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sites: {paris: {}}
        hosts: []
        centreon:
          forwarders:
            - {type: api_v2, url: 'https://c', token: env:CENTREON_TOKEN}
            - {type: api_v2, url: 'https://c', token: env:T, username: u, password: env:P}
            - {type: api_v2, url: 'https://c'}
            - {type: api_v2, url: 'https://c', username: u}
            - {type: api_v2, url: 'https://c', token: 'a-token-in-clear'}
            - {type: command_file, path: /x, engine: icinga}
        """,
    )
    found = locations(path)
    assert set(found) == {
        "centreon.forwarders[1]",
        "centreon.forwarders[2]",
        "centreon.forwarders[3]",
        "centreon.forwarders[4].token",
        "centreon.forwarders[5].engine",
    }
    assert "not both" in found["centreon.forwarders[1]"]
    assert "needs username and password (or token" in found["centreon.forwarders[2]"]
    assert "a-token-in-clear" not in "\n".join(found.values())
    assert "'centreon' or 'nagios'" in found["centreon.forwarders[5].engine"]


SENTINEL_URL = "sentinel://:pw@10.0.0.1:26379/2;sentinel://10.0.0.2:26379/2"


def test_a_sentinel_broker_is_also_the_state_redis_with_its_master(tmp_path: Path) -> None:
    text = f"broker_url: '{SENTINEL_URL}'\nsentinel_master: mymaster\n"
    config = load_config(write(tmp_path, text + "sentinel_password: env:SENTINELS\n" + MINIMAL))
    assert config.state_redis_url == SENTINEL_URL
    assert config.sentinel_master == "mymaster"
    assert config.sentinel_password == SecretRef("env", "SENTINELS")


def test_sentinel_urls_without_a_master_name_are_explained(tmp_path: Path) -> None:
    text = f"broker_url: '{SENTINEL_URL}'\nredis_url: '{SENTINEL_URL}'\n"
    assert [(p.location, p.reason) for p in problems_of(write(tmp_path, text + MINIMAL))] == [
        (
            "sentinel_master",
            "required: broker_url and redis_url are Sentinel URL: name the master the "
            "sentinels monitor (their `sentinel monitor NAME ...`)",
        )
    ]


def test_sentinel_settings_without_sentinel_urls_are_explained(tmp_path: Path) -> None:
    text = "broker_url: redis://r:6379/0\nsentinel_master: m\nsentinel_password: env:P\n"
    reason = (
        "set, but neither broker_url nor redis_url is a Sentinel URL "
        "(sentinel://host1:26379;sentinel://host2:26379/0): it would be ignored"
    )
    assert [(p.location, p.reason) for p in problems_of(write(tmp_path, text + MINIMAL))] == [
        ("sentinel_master", reason),
        ("sentinel_password", reason),
    ]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sentinel://a:26379;redis://b:6379", "part 2 of a Sentinel URL must start with"),
        ("sentinel://a:26379/zero", "the database of a Sentinel URL is a number"),
        ("sentinel://:26379", "part 1 of the Sentinel URL names no host"),
        ("sentinel://a:notaport", "part 1 of the Sentinel URL has an invalid port"),
    ],
)
def test_a_malformed_sentinel_url_is_named(tmp_path: Path, url: str, reason: str) -> None:
    text = f"broker_url: '{url}'\nsentinel_master: m\n"
    (problem,) = problems_of(write(tmp_path, text + MINIMAL))
    assert problem.location == "broker_url" and problem.reason.startswith(reason)


def test_sentinel_settings_come_from_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_CHECKS_BROKER_URL", SENTINEL_URL)
    monkeypatch.setenv("SMTP_CHECKS_SENTINEL_MASTER", "from-env")
    monkeypatch.setenv("SMTP_CHECKS_SENTINEL_PASSWORD", "hunter2")
    problems = problems_of(write(tmp_path, MINIMAL))
    assert [p.location for p in problems] == ["sentinel_password"]  # a reference, not a secret
    assert "hunter2" not in problems[0].reason
    monkeypatch.setenv("SMTP_CHECKS_SENTINEL_PASSWORD", "env:SENTINELS")
    assert load_config(write(tmp_path, MINIMAL)).sentinel_master == "from-env"


def test_quorum_queues_are_for_rabbitmq_only(tmp_path: Path) -> None:
    quorum = "broker_queue_type: quorum\n"
    amqp = "broker_url: amqp://guest@rabbit:5672//\nredis_url: redis://r:6379/0\n"
    assert load_config(write(tmp_path, amqp + quorum + MINIMAL)).broker_queue_type == "quorum"
    assert [(p.location, p.reason) for p in problems_of(
        write(tmp_path, "broker_url: redis://r:6379/0\n" + quorum + MINIMAL)
    )] == [("broker_queue_type", "quorum queues are RabbitMQ's: not for Redis")]  # fmt: skip
    (problem,) = problems_of(write(tmp_path, amqp + "broker_queue_type: stream\n" + MINIMAL))
    assert problem.location == "broker_queue_type" and "'classic' or 'quorum'" in problem.reason


ROUNDTRIP_CONFIG = """\
sites: {paris: {}, lyon: {}}
defaults: {interval: 300, verify_tls: false}
hosts:
  - name: mx1
    address: 192.0.2.10
    site: paris
    checks:
      roundtrip:
        from: monitor@example.com
        to: probe@example.com
        receive:
          protocol: imap
          address: imap.example.com
          username: probe
          password: env:PROBE_PASSWORD
          junk: [Junk, Spam]
          warning: 30
          critical: 60
  - name: mx2
    address: 192.0.2.11
    site: paris
    checks:
      roundtrip:
        from: monitor@example.com
        to: probe@example.com
        receive: {protocol: pop3, address: pop.example.com, tls: starttls, username: p,
                  password: "file:/etc/pw", site: lyon, timeout: 60}
"""


def test_a_round_trip_resolves_its_receive_side(tmp_path: Path) -> None:
    checks = by_id(load_config(write(tmp_path, ROUNDTRIP_CONFIG)))
    imap, pop3 = checks["mx1/roundtrip"], checks["mx2/roundtrip"]
    assert imap.mode is Mode.ROUNDTRIP and imap.service == "SMTP-Roundtrip"
    assert imap.message is not None and imap.message.to == ("probe@example.com",)
    receive = imap.receive
    assert receive is not None
    assert (receive.port, receive.tls, receive.site, receive.timeout) == (
        993,
        TlsMode.IMPLICIT,
        "paris",
        120,
    )
    assert (receive.junk, receive.warning, receive.critical) == (("Junk", "Spam"), "30", "60")
    assert receive.verify_tls is False  # the defaults' choice, as for the SMTP side
    assert str(receive.password) == "env:PROBE_PASSWORD"
    assert imap.receive_check_id == "mx1/roundtrip/receive"
    assert pop3.receive is not None
    assert (pop3.receive.port, pop3.receive.site, pop3.receive.mailbox) == (110, "lyon", "INBOX")


@pytest.mark.parametrize(
    ("change", "location", "reason"),
    [
        (("site: lyon", "site: nice"), "hosts[1].checks.roundtrip.receive.site", "unknown site 'nice'"),
        (("timeout: 60}", "timeout: 290}"), "hosts[1].checks.roundtrip.receive.timeout",
         "290s plus the timeout 30s must be shorter than the interval 300s"),
        (("timeout: 60}", "timeout: 60, junk: [Junk]}"), "hosts[1].checks.roundtrip.receive",
         "junk folders and a mailbox other than INBOX need IMAP"),
        (("timeout: 60}", "timeout: 60, mailbox: Probes}"), "hosts[1].checks.roundtrip.receive",
         "need IMAP (POP3 has one)"),
        (('password: "file:/etc/pw"', "password: hunter2"),
         "hosts[1].checks.roundtrip.receive.password", "plain-text passwords are refused"),
        (("protocol: pop3", "protocol: smtp"), "hosts[1].checks.roundtrip.receive.protocol", "'imap' or 'pop3'"),
    ],
)  # fmt: skip
def test_a_bad_receive_side_names_its_place(
    tmp_path: Path, change: tuple[str, str], location: str, reason: str
) -> None:
    found = locations(write(tmp_path, ROUNDTRIP_CONFIG.replace(*change)))
    assert reason in found.get(location, ""), found
    assert "hunter2" not in str(found)
