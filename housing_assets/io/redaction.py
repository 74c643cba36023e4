"""URLs made safe to record: what identifies a location stays, credentials do not."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"


def redact_url(url: str) -> str:
    """``url`` with its password and its query string (signed-URL tokens) replaced by ``***``.

    >>> redact_url("postgresql://optuna:s3cret@db:5432/optuna")
    'postgresql://optuna:***@db:5432/optuna'
    >>> redact_url("https://host/housing.tgz?X-Goog-Signature=abc")
    'https://host/housing.tgz?***'
    """
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url  # a plain path (or sqlite:///path) carries no credentials
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{HIDDEN}@{host}" if has_password else f"{user}@{host}"
    return urlunsplit(
        (parts.scheme, netloc, parts.path, HIDDEN if parts.query else "", parts.fragment)
    )
