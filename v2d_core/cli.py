"""The ``video2dataset`` command: video2dataset 1.3.0's flags (``--url_list=...``), via python-fire."""

from __future__ import annotations

import inspect
import logging
import signal
import sys
import traceback
from typing import Any

import fire

from v2d_core.api import video2dataset
from v2d_core.errors import V2DError
from v2d_core.redact import redact_text
from v2d_core.text import terminal_safe


def _command(*args: Any, **kwargs: Any) -> None:
    summary = video2dataset(*args, **kwargs)
    # Imported after the run: it loads the runner, which must not delay the workers' start.
    from v2d_core.runners.summary import summary_lines

    print("\n".join(summary_lines(summary)))
    if summary.failed_shards:
        sys.exit(1)


_command.__doc__ = video2dataset.__doc__
_command.__signature__ = inspect.signature(video2dataset)  # type: ignore[attr-defined]


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler stopping the run): handled as Ctrl-C is, with its own exit code."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main() -> None:
    """Entry point of the ``video2dataset`` console script; v2d's log goes to stderr."""
    # python-fire reads the help text through IPython when it is installed (about 1 s of
    # imports); its own reader gives the same text.
    sys.modules.setdefault("IPython", None)  # type: ignore[arg-type]
    signal.signal(signal.SIGTERM, _terminate)
    log_to_stderr()
    try:
        fire.Fire(_command, name="video2dataset")
    except V2DError as error:
        print(f"video2dataset: error: {terminal_safe(redact_text(str(error)))}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:  # a crash: its traceback, with credentials masked
        print(terminal_safe(redact_text("".join(traceback.format_exception(error)))), file=sys.stderr, end="")
        sys.exit(1)
    except KeyboardInterrupt as interruption:
        print(
            "video2dataset: interrupted; finished shards are kept, run the same command to resume",
            file=sys.stderr,
        )
        sys.exit(128 + signal.SIGTERM if isinstance(interruption, Terminated) else 130)


def log_to_stderr(prefix: str = "video2dataset") -> None:
    """v2d's own log lines (the run's environment first) on stderr, prefixed like its errors."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    logger = logging.getLogger("v2d_core")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


if __name__ == "__main__":
    main()
