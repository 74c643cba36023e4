"""URLs made safe to record, by allow-list: what locates a resource stays, everything else is
masked.

Kept: the scheme, the host and port, the path, and the *names* of query parameters. Masked
(``***``): the user-info (user and password alike), every query value, query items that are not
``name=value`` pairs, and the fragment. Strings without ``://`` (plain paths) are returned
unchanged: they carry no user-info, query or fragment to mask.
"""

from __future__ import annotations

HIDDEN = "***"


def redact_url(url: str) -> str:
    """``url`` with only its location left readable; never raises.

    >>> redact_url("postgresql+psycopg2://optuna:s3cret@db:5432/optuna")
    'postgresql+psycopg2://***@db:5432/optuna'
    >>> redact_url("postgresql+psycopg2:///optuna?host=db&password=s3cret")
    'postgresql+psycopg2:///optuna?host=***&password=***'
    >>> redact_url("https://user:pw@host/p?X-Goog-Signature=abc#token=abc")
    'https://***@host/p?X-Goog-Signature=***#***'
    >>> redact_url("/data/housing.tgz")
    '/data/housing.tgz'
    """
    try:
        return _redact(url)
    except Exception:  # a URL too odd to take apart: say only what kind it was
        return f"<unparseable URL: {HIDDEN}>"


def _redact(url: str) -> str:
    if not isinstance(url, str):
        url = str(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url  # a plain path (or an opaque string): nothing in it is user-info or a query
    # Split by hand rather than with urllib.parse: it rejects some hosts (a bracket left open)
    # and treats the query and fragment of unknown schemes inconsistently.
    rest, hash_sign, fragment = rest.partition("#")
    rest, question, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    if "@" not in authority and "@" in path and not _is_host_port(authority):
        # "user:pa/ss@host/db": a password with an unescaped "/" ends the authority early.
        authority, _, path = rest.rpartition("@")
        authority = f"{authority}@{path.partition('/')[0]}"
        slash, path = ("/", path.partition("/")[2]) if "/" in path else ("", "")
    if "@" in authority:
        authority = f"{HIDDEN}@{authority.rpartition('@')[2]}"
    redacted = f"{scheme}://{authority}{slash}{path}"
    if question:
        redacted += "?" + "&".join(_redact_item(item) for item in query.split("&"))
    if hash_sign:
        redacted += "#" + (HIDDEN if fragment else "")
    return redacted


def _is_host_port(authority: str) -> bool:
    """``host``, ``host:port`` or ``[v6 address]:port``, with a port of digits only."""
    host = authority.rpartition("]")[2] if authority.startswith("[") else authority
    if ":" not in host:
        return True
    _, _, port = host.partition(":")
    return port.isdigit() and ":" not in port


def _redact_item(item: str) -> str:
    """``name=***`` for a query item, ``***`` for an item with no name (``?token``)."""
    name, equals, _ = item.partition("=")
    if not equals:
        return HIDDEN if item else ""
    return f"{name}={HIDDEN}"
