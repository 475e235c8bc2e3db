"""TLS for the probe: client contexts (verifying by default), what is reported about a
session, and how a failed handshake is worded. Imported only by checks that use TLS."""

from __future__ import annotations

import functools
import ssl
import time

from smtp_checks.shared.probe.failures import FailureKind
from smtp_checks.shared.probe.result import TlsInfo
from smtp_checks.shared.probe.spec import TlsSettings

_SECONDS_PER_DAY = 86400.0


@functools.lru_cache(maxsize=64)
def _context(verify: bool, ca_file: str | None, ca_path: str | None) -> ssl.SSLContext:
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    # With a CA file or path, only those CAs are trusted; without, the system's store.
    return ssl.create_default_context(cafile=ca_file, capath=ca_path)


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """A shared context per setting: building one loads the CA store, which is slow."""
    return _context(settings.verify, settings.ca_file, settings.ca_path)


def handshake_failure(error: BaseException) -> tuple[FailureKind, str]:
    """A certificate that did not verify, told apart from any other handshake failure."""
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or error.reason or str(error)
        return FailureKind.CERTIFICATE, f"certificate verify failed: {reason}"
    if isinstance(error, ssl.SSLError):
        return FailureKind.TLS, f"TLS handshake failed: {error.reason or error}"
    detail = getattr(error, "strerror", None) or str(error) or "connection closed"
    return FailureKind.TLS, f"TLS handshake failed: {detail}"


def session_info(ssl_object: ssl.SSLObject | ssl.SSLSocket, now: float | None = None) -> TlsInfo:
    cipher = ssl_object.cipher()
    return TlsInfo(
        version=ssl_object.version() or "unknown",
        cipher=cipher[0] if cipher else "unknown",
        cert_days_left=_days_left(ssl_object, time.time() if now is None else now),
    )


def _days_left(ssl_object: ssl.SSLObject | ssl.SSLSocket, now: float) -> float | None:
    certificate = ssl_object.getpeercert()
    if certificate and "notAfter" in certificate:
        not_after = ssl.cert_time_to_seconds(str(certificate["notAfter"]))
        return (not_after - now) / _SECONDS_PER_DAY
    # Unverified sessions only expose the DER form; parse it only in that case (slow import).
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509  # noqa: PLC0415

    expiry = x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
    return (expiry - now) / _SECONDS_PER_DAY
