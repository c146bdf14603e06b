"""The `claudesidian-synthetic` command. Loading `datasets` takes a second or two; Ctrl-C then ends
as calmly as later on (one line, exit 130). Once the command has returned, its work is done or undone as
it said: a Ctrl-C after that changes nothing, so the process exits with the command's own status."""

import signal
import sys


def main() -> int:
    try:
        from claudesidian_tools import interrupts
        from claudesidian_tools.cli import main as run
    except KeyboardInterrupt:
        print("claudesidian-synthetic: interrupted: nothing was changed", file=sys.stderr)
        return 130
    try:
        code = run()
    except KeyboardInterrupt:  # in the instant between the command's end and here
        print(f"claudesidian-synthetic: interrupted: {interrupts.committed() or 'nothing was changed'}",
              file=sys.stderr)
        code = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code
