"""Ctrl-C and SIGTERM as a request to stop: one press stops a command cleanly, more presses change nothing.

No torch here: the CLI installs it for every command, and `convscope summary` must start instantly.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM as a request to stop, honoured by the training loop at the end of a batch.

    While `armed` (inside the epoch loop, where stopping mid-write would lose work) a signal is only recorded: the loop
    saves and raises Interrupted. Outside it, the first signal raises KeyboardInterrupt right away (a test pass or data
    loading has nothing to save). Every later signal is ignored, so pressing Ctrl-C three times still gives one clean
    stop and its message. The CLI installs one for a whole command; `train()` from Python installs one during fit.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.armed = False

    def handle(self, signum: int, _frame=None) -> None:
        if self.signal is not None:
            return  # already stopping: more presses change nothing
        self.signal = signum
        if not self.armed:
            raise KeyboardInterrupt

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal or signal.SIGINT)

    @contextmanager
    def installed(self, *, exiting: bool = False):
        """Handle SIGINT and SIGTERM while the block runs (main thread only; elsewhere signals cannot be caught).

        exiting: the process ends after the block (the CLI). Once a stop was requested, later signals stay ignored
        instead of reaching the default handlers, which would print a traceback from the interpreter's shutdown.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, signal.SIG_IGN if exiting and self.signal is not None else handler)
