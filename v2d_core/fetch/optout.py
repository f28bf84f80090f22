"""img2dataset's opt-out rule: an ``X-Robots-Tag`` directive in ``reading.disallowed_header_directives``
(default ``noai, noimageai, noindex, noimageindex``) excludes the file.

Each header value is a comma-separated list of directives, optionally addressed to one
crawler (``otherbot: noai``); as img2dataset does without a ``user_agent_token``, only
directives addressed to no crawler in particular count. An empty list turns the rule off.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from v2d_core.errors import OptOutError

HEADER = "X-Robots-Tag"


def disallowed_directive(values: Iterable[str], disallowed: Collection[str]) -> str | None:
    """The first directive of the ``X-Robots-Tag`` ``values`` that is in ``disallowed``, or None."""
    for value in values:
        agent, colon, directives = value.partition(":")
        if colon and agent.strip():  # addressed to one crawler, not to us
            continue
        for directive in (directives if colon else value).split(","):
            if directive.strip().lower() in disallowed:
                return directive.strip().lower()
    return None


def check_opt_out(values: Iterable[str], disallowed: Collection[str], url: str) -> None:
    """Raise :class:`OptOutError` when the response's ``X-Robots-Tag`` values exclude ``url``."""
    directive = disallowed_directive(values, disallowed)
    if directive is not None:
        raise OptOutError(
            f"{url} opts out with {HEADER}: {directive} (reading.disallowed_header_directives; "
            "an empty list ignores the header)"
        )
