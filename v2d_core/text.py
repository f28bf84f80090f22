"""Text from strangers made safe to write as UTF-8 (txt, json, parquet, tar member names).

Python strings can hold what UTF-8 cannot: lone surrogates, which ``\\ud800`` escapes in
JSON and undecodable bytes in tar member names (``surrogateescape``) produce. Each becomes
U+FFFD, the character ``bytes.decode(errors="replace")`` puts for invalid UTF-8 bytes.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 and C1 control characters but tab and newline: ESC, BEL, CR... from a server's message
# would move the cursor, ring, recolour or rewrite the user's terminal.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def valid_text(value: str) -> str:
    """``value`` unchanged if it encodes as UTF-8, else with every lone surrogate replaced by U+FFFD."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(REPLACEMENT, value)
    return value


def terminal_safe(text: str) -> str:
    """``text`` with control characters (tab and newline aside) shown as ``\\xNN`` escapes."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
