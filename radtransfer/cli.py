"""The `radtransfer` command."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    print("radtransfer: the command-line interface is not built yet (see the open issues).", file=sys.stderr)
    return 2
