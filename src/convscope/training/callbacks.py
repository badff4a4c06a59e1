"""How a front end follows training (Callback), and the data loader's progress passed on to the callbacks. How
training says it was stopped is convscope.errors.Interrupted."""

from __future__ import annotations

from collections.abc import Callable

from convscope.run import Run


class Callback:
    """Hooks a front end (the CLI's progress bar) uses to show training; the library itself only logs."""

    def on_data(self, done: int, total: int) -> None: ...  # images read so far (decoded or from the cache)
    def on_start(self, run: Run, epochs: int, batches: int, epoch: int) -> None: ...
    def on_note(self, line: str) -> None: ...  # a line worth showing: how threads and precision were chosen
    def on_batch(self, epoch: int, batch: int, loss: float, accuracy: float, images_per_s: float) -> None: ...
    def on_epoch(self, row: dict[str, float]) -> None: ...
    def on_end(self, run: Run, results: dict) -> None: ...


def data_progress(callbacks) -> Callable[[int, int], None] | None:
    """progress(done, total) for the data loader, telling every callback that has an on_data hook."""
    hooks = [cb.on_data for cb in callbacks if hasattr(cb, "on_data")]
    return (lambda done, total: [hook(done, total) for hook in hooks]) if hooks else None
