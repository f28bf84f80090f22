"""Credentials stay out of everything v2d records: messages, logs, rows, stats, Dagster metadata.

:func:`redact_text` masks, with ``***``:

- the user-info of every url in the text (``https://user:pw@host`` and ``s3://KEY:SECRET@bucket``
  become ``https://***@host`` and ``s3://***@bucket``);
- query parameters that carry credentials (``X-Amz-Signature``, ``sig``, ``token``, ``api_key``...),
  ``Authorization:`` / ``Cookie:`` header values and ``password=...``-style pairs;
- every value :func:`remember` was given in this process (the cookie values of a cookie file,
  a proxy's password, yt-dlp passwords), wherever it shows up.

:func:`redact_mapping` does the same for a config-like mapping, and masks whole values under
secret-sounding keys (``password``, ``secret``, ``token``, ``key`` of fsspec storage options...).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET_CHARS = 6  # shorter remembered values ("1", "yes") would mask ordinary words

SECRET_KEY = re.compile(
    r"^key$|password|passwd|passphrase|secret|token|credential|cookie|authorization|api_?key|"
    r"access_?key|account_?key|private_?key|signature|connection_?string",
    re.IGNORECASE,
)
# Query parameters that sign or authorise a url, by provider: AWS (X-Amz-*), GCS (X-Goog-*),
# Azure SAS (sig, se), CloudFront (Signature, Key-Pair-Id, Policy), Akamai (__token__, hmac),
# Alibaba (auth_key), and the generic names. Matched case-insensitively on the whole name.
SIGNING_PARAMS = re.compile(
    r"x-amz-.+|x-goog-.+|sig|se|signature|key-pair-id|policy|__token__|hdnts|hmac|auth_key|"
    r"token|access_token|id_token|refresh_token|auth|api_key|apikey|key|password|passwd|secret|"
    r"client_secret|sas_token",
    re.IGNORECASE,
)
# A url in free text: scheme://... or protocol-relative //..., up to whitespace or a quote.
URL_IN_TEXT = re.compile(r"(?<![\w/])(?:[a-z][a-z0-9+.\-]*:)?//[^\s'\"<>]+", re.IGNORECASE)
PATTERNS = (
    # header lines
    (
        re.compile(r"\b(authorization|proxy-authorization|cookie|set-cookie)(\s*[:=]\s*)[^\r\n]*", re.I),
        rf"\1\2{MASK}",
    ),
    # "password": "value" and password=value
    (re.compile(r"(\"(?:password|passwd|secret|token|api_key)\"\s*:\s*\")[^\"]*", re.I), rf"\1{MASK}"),
    (
        re.compile(r"(?<![?&;])\b((?:password|passwd|secret|api_key)\s*[=:]\s*)[^\s,;'\"&]+", re.I),
        rf"\1{MASK}",
    ),
)

_known: tuple[str, ...] = ()  # longest first, so a value inside another is masked after it
_lock = threading.Lock()


def remember(values: Iterable[str | None]) -> None:
    """Mask these values in every later :func:`redact_text` of this process (short ones are ignored)."""
    global _known
    fresh = {value for value in values if isinstance(value, str) and len(value) >= MIN_SECRET_CHARS}
    with _lock:
        _known = tuple(sorted(set(_known) | fresh, key=len, reverse=True))


def redact_url(url: str | None) -> str | None:
    """:func:`redact_text` of a sample's url, which a bad input row may leave empty."""
    return None if url is None else redact_text(url)


def redact_text(text: str) -> str:
    """``text`` with credentials in urls, headers and remembered values replaced by ``***``."""
    for value in _known:  # sorted once in remember(), not on every row
        text = text.replace(value, MASK)
    text = URL_IN_TEXT.sub(lambda match: _redact_one_url(match.group()), text)
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_one_url(url: str) -> str:
    """``url`` with its user-info and signing query parameters masked, parsed by urllib.

    The netloc ends at the first ``/?#``; its user-info is everything before the LAST ``@``,
    so a password holding ``@`` is masked whole.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # an unparseable netloc ("[::1"): mask everything up to its last "@"
        head, at, _ = url.partition("?")[0].rpartition("@")
        return f"{head.partition('//')[0]}//{MASK}@{url[len(head) + 1 :]}" if at else url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = "".join(_masked_param(piece) for piece in _SEPARATOR.split(parts.query)) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


_SEPARATOR = re.compile(r"([&;])")


def _masked_param(piece: str) -> str:
    name, equals, value = piece.partition("=")
    if equals and value and SIGNING_PARAMS.fullmatch(unquote(name)):
        return f"{name}={MASK}"
    return piece


def redact_mapping(value: Any) -> Any:
    """A copy of ``value`` (mappings, lists, strings nested) with secret keys' values masked and
    every string passed through :func:`redact_text`."""
    if isinstance(value, Mapping):
        return {key: MASK if _secret_key(key) and value[key] else redact_mapping(value[key]) for key in value}
    if isinstance(value, list | tuple):
        return [redact_mapping(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def secret_values(value: Any) -> Iterator[str]:
    """The strings found under secret-sounding keys anywhere in ``value`` (for :func:`remember`)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if _secret_key(key):
                yield from _strings(item)
            else:
                yield from secret_values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from secret_values(item)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _secret_key(key: object) -> bool:
    return isinstance(key, str) and bool(SECRET_KEY.search(key))
