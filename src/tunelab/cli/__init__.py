"""Command-line interface: parse, call tunelab.api, render with rich. No logic here."""

from __future__ import annotations

import sys


def main() -> None:
    from tunelab.errors import TunelabError

    from tunelab.cli.app import app, quiet_libraries

    quiet_libraries()
    try:
        app()
    except TunelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
