"""Command-line interface: parse, call tunelab.api, render with rich. No logic here."""

from __future__ import annotations

import sys


def main() -> None:
    from tunelab.cli.quiet import quiet_libraries

    quiet_libraries()  # before the libraries are imported: some warn at import time
    from tunelab.cli.app import app
    from tunelab.errors import TunelabError

    try:
        app()
    except TunelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
