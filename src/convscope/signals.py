"""Ctrl-C and SIGTERM as a request to stop: one press stops a command cleanly, more presses change nothing.

No torch here: the CLI installs it for every command, and `convscope summary` must start instantly.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM as a request to stop, honoured by the training loop at the end of a batch.

    While `armed` (inside the epoch loop, where stopping mid-write would lose work) a signal is only recorded: the loop
    saves and raises Interrupted. Outside it, the first signal raises KeyboardInterrupt right away (a test pass or data
    loading has nothing to save). Later signals are ignored, so pressing Ctrl-C three times still gives one clean stop
    and its message. Once `done` (the command has finished its work), every signal is ignored. The CLI installs one
    for a whole command; `train()` from Python installs one during fit.

    CPython drops an exception raised while it runs a weakref or garbage-collection callback, printing "Exception
    ignored in ..." (sys.unraisablehook). Such a dropped KeyboardInterrupt of ours is delivered again a moment later
    instead, so no press is lost and nothing is printed.
    """

    REDELIVER_AFTER = 0.05  # seconds: the callback that dropped the interrupt has returned by then

    def __init__(self) -> None:
        self.signal: int | None = None
        self.armed = False
        self.done = False
        self._redeliver = False

    def handle(self, signum: int, _frame=None) -> None:
        if self.done or (self.signal is not None and not self._redeliver):
            return  # finished, or already stopping (the loop saves and stops, or the interrupt is on its way)
        self.signal = self.signal or signum
        self._redeliver = False
        if not self.armed:
            raise KeyboardInterrupt

    def _unraisable(self, unraisable, previous) -> None:
        if issubclass(unraisable.exc_type, KeyboardInterrupt) and self.signal is not None and not self.done:
            self._redeliver = True
            timer = threading.Timer(self.REDELIVER_AFTER, os.kill, (os.getpid(), self.signal))
            timer.daemon = True
            timer.start()
            return
        previous(unraisable)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal or signal.SIGINT)

    @contextmanager
    def installed(self, *, exiting: bool = False):
        """Handle SIGINT and SIGTERM while the block runs (main thread only; elsewhere signals cannot be caught).

        exiting: the process ends after the block (the CLI). Later signals stay ignored instead of reaching the
        default handlers, which would print a traceback from the interpreter's shutdown.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        previous_hook = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: self._unraisable(unraisable, previous_hook)
        try:
            yield self
        finally:
            sys.unraisablehook = previous_hook
            for s, handler in previous.items():
                signal.signal(s, signal.SIG_IGN if exiting else handler)
