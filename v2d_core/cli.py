"""The ``video2dataset`` command: video2dataset 1.3.0's flags (``--url_list=...``), via python-fire."""

from __future__ import annotations

import inspect
import sys
import traceback
from typing import Any

import fire

from v2d_core.api import video2dataset
from v2d_core.errors import V2DError
from v2d_core.redact import redact_text


def _command(*args: Any, **kwargs: Any) -> None:
    from v2d_core.summary import summary_lines  # with the runner, after ``--help`` is answered

    summary = video2dataset(*args, **kwargs)
    print("\n".join(summary_lines(summary)))
    if summary.failed_shards:
        sys.exit(1)


_command.__doc__ = video2dataset.__doc__
_command.__signature__ = inspect.signature(video2dataset)  # type: ignore[attr-defined]


def main() -> None:
    """Entry point of the ``video2dataset`` console script."""
    # python-fire reads the help text through IPython when it is installed (about 1 s of
    # imports); its own reader gives the same text.
    sys.modules.setdefault("IPython", None)  # type: ignore[arg-type]
    try:
        fire.Fire(_command, name="video2dataset")
    except V2DError as error:
        print(f"video2dataset: error: {redact_text(str(error))}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:  # a crash: its traceback, with credentials masked
        print(redact_text("".join(traceback.format_exception(error))), file=sys.stderr, end="")
        sys.exit(1)
    except KeyboardInterrupt:
        print(
            "video2dataset: interrupted; finished shards are kept, run the same command to resume",
            file=sys.stderr,
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
