"""``v2d-verify OUTPUT_FOLDER``: check a written dataset; exit 0 if every check passes, 1 if not."""

from __future__ import annotations

import argparse
import sys

from v2d_core.errors import V2DError
from v2d_core.redact import redact_text
from v2d_core.shards.dataset import verify_dataset
from v2d_core.writers import WRITERS


def main(argv: list[str] | None = None) -> None:
    """Print one line per failed check and a verdict; exit 1 when a check fails, 2 on an unusable folder."""
    parser = argparse.ArgumentParser(
        prog="v2d-verify",
        description="Check every shard of a dataset: committed, its data holds exactly the samples its "
        "parquet marks successful, its stats count its parquet, and every key appears once.",
    )
    parser.add_argument("output_folder", help="the dataset's folder (any fsspec url)")
    parser.add_argument(
        "--output_format",
        choices=sorted(WRITERS),
        help="the format the shards were written in (found from each shard's files if not given)",
    )
    args = parser.parse_args(argv)
    try:
        report = verify_dataset(args.output_folder, args.output_format)
    except V2DError as error:
        print(f"v2d-verify: error: {redact_text(str(error))}", file=sys.stderr)
        sys.exit(2)
    print(redact_text("\n".join(report.lines())))
    sys.exit(0 if report.passed else 1)


if __name__ == "__main__":
    main()
