"""Ctrl-C while files are being put in place waits until they all are: a folder or a file is never left
half old, half new, and the message then says what was written.

Python drops a KeyboardInterrupt that lands inside a finalizer or a weakref callback (it prints
"Exception ignored in ..." and carries on), so a Ctrl-C at such a moment would be lost and the command
would write its files anyway. While `watching()`, every Ctrl-C is also remembered, and each point that
puts files in place (`interrupt_deferred`, a push's commit) first raises one that was dropped. Once
files are in place, `committed()` says so, for a Ctrl-C that comes any time after."""

from __future__ import annotations

import signal
import sys
from typing import Optional

_seen = False
_committed: Optional[str] = None


def _remember_and_raise(signum, frame):
    global _seen
    _seen = True
    raise KeyboardInterrupt


class watching:
    """Remember each Ctrl-C within the block (the command line runs in one); a SIGINT that is ignored
    stays so. The handler and `sys.unraisablehook` are as they were after the block."""

    def __enter__(self):
        global _seen, _committed
        _seen, _committed = False, None
        self.installed = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        if self.installed:
            try:
                signal.signal(signal.SIGINT, _remember_and_raise)
            except ValueError:  # not the main thread
                self.installed = False
        if self.installed:
            self.hook = sys.unraisablehook
            sys.unraisablehook = self._quiet_about_dropped_interrupts
        return self

    def _quiet_about_dropped_interrupts(self, unraisable):
        if not (_seen and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            self.hook(unraisable)

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.unraisablehook = self.hook
        return False


def say(said: Optional[str] = None) -> int:
    """The one line a Ctrl-C ends the command with (what is in place now), and its exit status."""
    print(f"claudesidian-synthetic: interrupted: {said or 'nothing was changed'}", file=sys.stderr)
    return 130


def raise_if_interrupted() -> None:
    """Raise the Ctrl-C that Python dropped, if there was one: call this before putting files in place."""
    if _seen:
        raise KeyboardInterrupt


def committed() -> Optional[str]:
    """What the last `interrupt_deferred` block put in place (its `said`), or None."""
    return _committed


class InterruptedAfterWrite(KeyboardInterrupt):
    """Ctrl-C came while files were being put in place; they all were first. `said` is what is there now."""

    def __init__(self, said: str):
        super().__init__(said)
        self.said = said


class interrupt_deferred:
    """Hold Ctrl-C (SIGINT) until the block ends, then raise InterruptedAfterWrite(`said`); a block that
    ends well leaves `said` as what `committed()` answers."""

    def __init__(self, said: str):
        self.said = said

    def __enter__(self):
        raise_if_interrupted()
        self.caught = False
        try:
            self.previous = signal.signal(signal.SIGINT, self._catch)
        except ValueError:  # not the main thread: nothing to defer
            self.previous = None
        return self

    def _catch(self, *args):
        self.caught = True

    def __exit__(self, *exc):
        global _committed
        if exc[0] is None:  # set while Ctrl-C is still held: no moment where the files are in and it is not
            _committed = self.said
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if self.caught and exc[0] is None:
            raise InterruptedAfterWrite(self.said)
        return False
