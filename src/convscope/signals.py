"""Ctrl-C and SIGTERM as a request to stop: one press stops a command cleanly, more presses change nothing.

No torch here: the CLI installs it for every command, and `convscope summary` must start instantly.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM as a request to stop, honoured by the training loop at the end of a batch.

    While `armed` (inside the epoch loop, where stopping mid-write would lose work) a signal is only recorded: the loop
    saves and raises Interrupted. Outside it, the first signal raises KeyboardInterrupt right away (a test pass or data
    loading has nothing to save). Later signals are ignored, so pressing Ctrl-C three times still gives one clean stop
    and its message; but a press REPEAT_AFTER seconds after an unheeded one raises again, since CPython drops an
    exception raised while it runs a weakref or garbage-collection callback ("Exception ignored in ..."). Once `done`
    (the command has finished its work), every signal is ignored. The CLI installs one for a whole command; `train()`
    from Python installs one during fit.
    """

    REPEAT_AFTER = 1.0  # seconds

    def __init__(self) -> None:
        self.signal: int | None = None
        self.armed = False
        self.done = False
        self._raised_at: float | None = None

    def handle(self, signum: int, _frame=None) -> None:
        if self.done:
            return
        if self.signal is None:
            self.signal = signum
        elif self._raised_at is None or time.monotonic() - self._raised_at < self.REPEAT_AFTER:
            return  # already stopping (the loop saves and stops, or the interrupt is on its way): nothing more
        if not self.armed:
            self._raised_at = time.monotonic()
            raise KeyboardInterrupt

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
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, signal.SIG_IGN if exiting else handler)
