"""Ctrl-C while files are being put in place waits until they all are: a folder or a file is never left
half old, half new, and the message then says what was written."""

from __future__ import annotations

import signal


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
