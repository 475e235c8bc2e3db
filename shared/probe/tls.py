"""TLS for the probe: client contexts (verifying by default), what is reported about a
session, and how a failed handshake is worded. Imported only by checks that use TLS."""

from __future__ import annotations

import functools
import ssl
import time

from smtp_checks.shared.probe.failures import FailureKind
from smtp_checks.shared.probe.result import TlsInfo
from smtp_checks.shared.probe.spec import TlsMinVersion, TlsSettings

_SECONDS_PER_DAY = 86400.0


_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


@functools.lru_cache(maxsize=64)
def _context(
    verify: bool, ca_file: str | None, ca_path: str | None, min_version: TlsMinVersion | None
) -> ssl.SSLContext:
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        # With a CA file or path, only those CAs are trusted; without, the system's store.
        context = ssl.create_default_context(cafile=ca_file, capath=ca_path)
    if min_version is not None:
        context.minimum_version = _VERSIONS[min_version]
    return context


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """A shared context per setting: building one loads the CA store, which is slow."""
    return _context(settings.verify, settings.ca_file, settings.ca_path, settings.min_version)


def handshake_failure(
    error: BaseException, settings: TlsSettings | None = None
) -> tuple[FailureKind, str]:
    """A certificate that did not verify, told apart from any other handshake failure. With
    `tls_min_version`, a failed handshake says it may be why: servers refusing a version
    mostly just close the connection (OpenSSL's UNEXPECTED_EOF), which names nothing."""
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or error.reason or str(error)
        return FailureKind.CERTIFICATE, f"certificate verify failed: {reason}"
    if isinstance(error, ssl.SSLError):
        reason = f"TLS handshake failed: {error.reason or error}"
        minimum = settings.min_version if settings is not None else None
        if minimum is not None:
            reason += f" (tls_min_version={minimum}: the server may offer only older versions)"
        return FailureKind.TLS, reason
    detail = getattr(error, "strerror", None) or str(error) or "connection closed"
    return FailureKind.TLS, f"TLS handshake failed: {detail}"


def session_info(ssl_object: ssl.SSLObject | ssl.SSLSocket, now: float | None = None) -> TlsInfo:
    cipher = ssl_object.cipher()
    now = time.time() if now is None else now
    return TlsInfo(
        version=ssl_object.version() or "unknown",
        cipher=cipher[0] if cipher else "unknown",
        cert_days_left=_days_left(ssl_object, now),
        chain_days_left=_chain_days_left(ssl_object, now),
    )


def _chain_days_left(ssl_object: ssl.SSLObject | ssl.SSLSocket, now: float) -> float | None:
    """Days to the earliest expiry among the certificates the server sent, verified or not.
    Python 3.13 has `get_unverified_chain()`; before it, the same call of the `_ssl` object.
    (On 3.13 the chain comes as DER bytes, parsed with cryptography: a slower import.)"""
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    try:
        chain = getter() if getter is not None else None
        expiries = [_not_after(certificate) for certificate in chain or ()]
    except Exception:  # a certificate OpenSSL took that we cannot read: no figure, no crash
        return None
    return (min(expiries) - now) / _SECONDS_PER_DAY if expiries else None


def _not_after(certificate: object) -> float:
    """The expiry of one certificate of a chain: DER bytes (3.13), or `_ssl.Certificate`."""
    if isinstance(certificate, bytes):
        from cryptography import x509  # noqa: PLC0415 (slow import)

        return x509.load_der_x509_certificate(certificate).not_valid_after_utc.timestamp()
    info = certificate.get_info()  # type: ignore[attr-defined]
    return ssl.cert_time_to_seconds(str(info["notAfter"]))


def _days_left(ssl_object: ssl.SSLObject | ssl.SSLSocket, now: float) -> float | None:
    try:
        return _leaf_days_left(ssl_object, now)
    except Exception:  # an unverified certificate we cannot parse: no figure, no crash
        return None


def _leaf_days_left(ssl_object: ssl.SSLObject | ssl.SSLSocket, now: float) -> float | None:
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
