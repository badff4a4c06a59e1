"""One small error hierarchy. Every message says what was expected, what was received, and where."""


class ConvscopeError(Exception):
    """Base of every error convscope raises on purpose; the CLI prints it as one line and exits 2."""


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


class PeerFailed(ConvscopeError):
    """Under torchrun: rank 0 failed at a step every process waits on. Rank 0 prints the reason; the other ranks
    exit with this, quietly, instead of waiting for a step that never comes."""
