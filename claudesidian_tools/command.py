"""The `claudesidian-synthetic` command. Loading `datasets` takes a second or two; Ctrl-C then ends
as calmly as later on (one line, exit 130)."""

import sys


def main() -> int:
    try:
        from claudesidian_tools.cli import main as run
    except KeyboardInterrupt:
        print("claudesidian-synthetic: interrupted: nothing was changed", file=sys.stderr)
        return 130
    return run()
