"""Where downloaded datasets live when no folder is named: one place that `convscope data get NAME` writes to and that
`load_dataset(NAME, None)` (so `convscope train --data NAME` without `--data-dir`) reads from.

The folder: $CONVSCOPE_DATA_HOME/NAME, else $XDG_DATA_HOME/convscope/datasets/NAME, else
~/.local/share/convscope/datasets/NAME. The data home, not the cache: a dataset is kept, not evicted like the decoded
cache (data.cache). The datasets in DEFAULT_IN_HOME use it, and the arrays given to convscope.train (its `arrays`
folder, data.arrays); Fashion-MNIST's default is Debian's system copy and MNIST has none (data.idx), so `data get`
needs a folder for those.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_IN_HOME = ("cifar10", "cifar100")  # the datasets whose loader reads dataset_folder(name) when given no folder


def data_home() -> Path:
    """The folder holding one subfolder per downloaded dataset (see the module's docstring)."""
    chosen = os.environ.get("CONVSCOPE_DATA_HOME")
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "convscope" / "datasets"


def dataset_folder(name: str) -> Path:
    """The default folder of dataset `name` ("cifar10", ...): data_home() / name."""
    return data_home() / name
