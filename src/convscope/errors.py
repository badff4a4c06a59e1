"""One small error hierarchy, and the one home of convscope's exceptions. Every message says what was expected, what
was received, and where.

The CLI turns each into one line on stderr and exits with the error's `exit_code`: `convscope: error: MESSAGE` and 2
for most; an `outcome` (training stopped by a signal, some images not predicted, label problems found) says how the
command ended in its own words, without "error:", and exits with a status of its own.
"""

from __future__ import annotations

import signal
from pathlib import Path

EXIT_SIGPIPE = 128 + signal.SIGPIPE  # 141, as a shell reports a command that SIGPIPE ended (`convscope … | head`)


class ConvscopeError(Exception):
    """Base of every error convscope raises on purpose; the CLI prints it as one line and exits with `exit_code`."""

    exit_code = 2  # the CLI's exit status, the same as for a usage mistake
    # True: the message reports how the command ended rather than an error; the CLI prints it without "error:", and
    # under torchrun only rank 0 prints it (the other ranks exit with the status quietly).
    outcome = False


class SpecError(ConvscopeError):
    """A network spec that cannot be built or cannot run on its input (raised before any tensor exists).

    `layer` is the 1-based index of the offending layer when there is one, and `detail` the message without
    its location, so a caller that knows more (a file name, a line) can say where without re-parsing text.
    """

    def __init__(self, message: str, *, layer: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.layer = layer
        self.detail = detail if detail is not None else message


class DataError(ConvscopeError):
    """An input file or array that is not what was expected."""


class CheckpointError(ConvscopeError):
    """A weights or state file that is missing, damaged, or does not match its model."""


class OutputError(ConvscopeError):
    """A file or folder convscope had to write could not be written (read-only, disk full, no permission)."""


class ConfigError(ConvscopeError):
    """A training setting that is missing, of the wrong type, or impossible."""


class TrainingError(ConvscopeError):
    """Training cannot go on (e.g. the loss stopped being a finite number)."""


class ExportError(ConvscopeError):
    """An exported model that does not compute what the PyTorch model computes (it is not written)."""


class RunNotFound(ConvscopeError, LookupError):
    """No run of that name inside the studio's runs folder (the message is the name; the studio answers 404)."""


class PeerFailed(ConvscopeError):
    """Under torchrun: rank 0 failed at a step every process waits on. Rank 0 prints the reason; the other ranks
    exit with this, quietly, instead of waiting for a step that never comes."""


class Interrupted(ConvscopeError):
    """SIGINT / SIGTERM: training stopped at the end of a batch and saved; `exit_code` is 130 or 143. `stopped`:
    where it stopped, without advice; `path`: the run folder that resumes it (None when nothing was saved)."""

    outcome = True

    def __init__(self, message: str, exit_code: int, stopped: str = "", path: Path | None = None):
        super().__init__(message)
        self.exit_code, self.stopped, self.path = exit_code, stopped or message, path


class WorkersFailed(ConvscopeError):
    """The processes --nproc started did not all finish: `exit_code` is the first failed rank's (130/143: a signal)."""

    outcome = True

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class SomeImagesFailed(DataError):
    """Some of the images could not be predicted (each is named on its own), the others were: the CLI exits with
    `exit_code` 1, keeping 2 for "nothing could be predicted" and usage errors."""

    exit_code = 1
    outcome = True


class LintProblems(ConvscopeError):
    """`convscope detect lint` found label problems: the CLI prints the summary as one line and exits 1."""

    exit_code = 1
    outcome = True
