"""SASL answers match the RFCs' worked examples."""

from __future__ import annotations

import base64

from smtp_checks.shared.probe import sasl
from smtp_checks.shared.probe.spec import Credentials


def test_cram_md5_matches_rfc_2195_example() -> None:
    credentials = Credentials("tim", "tanstaaftanstaaf")
    challenge = base64.b64decode("PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+")
    answer = sasl.SUPPORTED["CRAM-MD5"].answer(challenge, 0, credentials)
    assert sasl.encode(answer) == "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"


def test_plain_initial_response() -> None:
    credentials = Credentials("user", "pass")
    assert sasl.SUPPORTED["PLAIN"].initial_response(credentials) == b"\0user\0pass"


def test_login_answers_username_then_password() -> None:
    credentials = Credentials("user", "pass")
    login = sasl.SUPPORTED["LOGIN"]
    assert login.initial_response(credentials) is None
    assert login.answer(b"Username:", 0, credentials) == b"user"
    assert login.answer(b"Password:", 1, credentials) == b"pass"


def test_choice_depends_on_encryption() -> None:
    offered = ["LOGIN", "PLAIN", "CRAM-MD5", "XOAUTH2"]
    assert sasl.choose(offered, encrypted=True) == sasl.SUPPORTED["PLAIN"]
    assert sasl.choose(offered, encrypted=False) == sasl.SUPPORTED["CRAM-MD5"]
    assert sasl.choose(["xoauth2", "login"], encrypted=False) == sasl.SUPPORTED["LOGIN"]
    assert sasl.choose(["GSSAPI"], encrypted=True) is None


def test_credentials_repr_hides_the_password() -> None:
    assert "pass" not in repr(Credentials("user", "pass-word-1"))
