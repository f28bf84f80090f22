"""requests' settings from the environment (proxies, ``no_proxy``, CA bundle), looked up once per origin.

For every request, ``requests.Session.merge_environment_settings`` scans every environment variable
twice (for ``*_proxy`` and the bypass list): about 0.3 ms of CPU per fetched video, a tenth of a
download's. A shard's environment does not change while it runs, so a :class:`CachedEnvironmentSession`
keeps requests' own answer per url origin and request settings in an :class:`EnvironmentCache`
shared by the shard's fetch threads. The answer is still requests' own: its proxy, ``no_proxy``,
netrc and CA-bundle rules are untouched, and redirects are resolved by requests as before.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

Settings = dict[str, Any]
EnvironmentCache = dict[tuple[Any, ...], Settings]


class CachedEnvironmentSession(requests.Session):
    """A ``requests.Session`` whose environment lookups go through ``cache``."""

    def __init__(self, cache: EnvironmentCache) -> None:
        super().__init__()
        self._cache = cache

    def merge_environment_settings(
        self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Settings:
        parts = urlsplit(url)
        key = (
            parts.scheme,
            parts.netloc,
            _frozen(proxies),
            _frozen(self.proxies),
            self.trust_env,
            stream,
            verify,
            cert,
        )
        if (settings := self._cache.get(key)) is None:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._cache[key] = settings
        return {**settings, "proxies": dict(settings["proxies"])}


def _frozen(mapping: Any) -> frozenset[tuple[Any, Any]]:
    return frozenset((mapping or {}).items())
