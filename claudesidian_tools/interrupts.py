"""Ctrl-C while files are being put in place waits until they all are: a folder or a file is never left
half old, half new, and the message then says what was written.

Python drops a KeyboardInterrupt that lands inside a finalizer or a weakref callback (it prints
"Exception ignored in ..." and carries on), so a Ctrl-C at such a moment would be lost and the command
would write its files anyway. Under `watch()` every Ctrl-C is also remembered, and each point that puts
files in place (`interrupt_deferred`, a push's commit) first raises one that was dropped."""

from __future__ import annotations

import signal
import sys

_seen = False


def _remember_and_raise(signum, frame):
    global _seen
    _seen = True
    raise KeyboardInterrupt


def _quiet_about_dropped_interrupts(previous_hook):
    def hook(unraisable):
        if not (_seen and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            previous_hook(unraisable)
    return hook


def watch() -> None:
    """Remember each Ctrl-C from now on (the command line calls this; a SIGINT that is ignored stays so)."""
    global _seen
    _seen = False
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        try:
            signal.signal(signal.SIGINT, _remember_and_raise)
        except ValueError:  # not the main thread
            return
        sys.unraisablehook = _quiet_about_dropped_interrupts(sys.unraisablehook)


def raise_if_interrupted() -> None:
    """Raise the Ctrl-C that Python dropped, if there was one: call this before putting files in place."""
    if _seen:
        raise KeyboardInterrupt


class InterruptedAfterWrite(KeyboardInterrupt):
    """Ctrl-C came while files were being put in place; they all were first. `said` is what is there now."""

    def __init__(self, said: str):
        super().__init__(said)
        self.said = said


class interrupt_deferred:
    """Hold Ctrl-C (SIGINT) until the block ends, then raise InterruptedAfterWrite(`said`)."""

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
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if self.caught and exc[0] is None:
            raise InterruptedAfterWrite(self.said)
        return False
