"""Serve the example dataset's videos on 127.0.0.1 so ``v2d_dagster/defs/example`` works offline.

    python -m v2d_dagster.example_media            # 8 generated videos at http://127.0.0.1:8765/files/

The videos are generated once with ffmpeg into ``--folder`` and kept there. They last 6 s,
so that the ``downsample`` stage (``downsample_ml``: clips of 4-10 s) has clips to cut.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from v2d_core.testing.media import make_videos

DEFAULT_PORT = 8765
SECONDS = 6.0


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log on the terminal."""


def serve(folder: Path, port: int = DEFAULT_PORT, count: int = 8) -> ThreadingHTTPServer:
    """Generate ``count`` videos under ``folder/files`` and return a server for ``folder`` (not started)."""
    make_videos(folder / "files", count, seconds=SECONDS, width=320, height=240)
    handler = functools.partial(_QuietHandler, directory=str(folder))
    return ThreadingHTTPServer(("127.0.0.1", port), handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "v2d-example-media-6s")
    parser.add_argument("--videos", type=int, default=8)
    args = parser.parse_args(argv)
    server = serve(args.folder, args.port, args.videos)
    print(
        f"serving {args.folder / 'files'} at http://127.0.0.1:{args.port}/files/ (Ctrl-C stops)", flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
