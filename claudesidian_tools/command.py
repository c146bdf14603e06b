"""The `claudesidian-synthetic` command (also `python -m claudesidian_tools`). Loading `datasets` takes a
second or two; Ctrl-C then ends as calmly as later on (one line, exit 130). Once the command has returned,
its work is done or undone as it said: a Ctrl-C after that changes nothing, so the process exits with the
command's own status."""

import signal


def main() -> int:
    try:
        from claudesidian_tools import interrupts
        from claudesidian_tools.cli import main as run
    except KeyboardInterrupt:
        from claudesidian_tools.interrupts import say

        return say()
    try:
        code = run()
    except KeyboardInterrupt:  # in the instant between the command's end and here
        code = interrupts.say(interrupts.committed())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code
