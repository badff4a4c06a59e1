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

from convscope.errors import ConfigError

DEFAULT_IN_HOME = ("cifar10", "cifar100")  # the datasets whose loader reads dataset_folder(name) when given no folder


def data_home() -> Path:
    """The folder holding one subfolder per downloaded dataset (see the module's docstring).

    A ConfigError (one line) when CONVSCOPE_DATA_HOME is set to a relative path: it would mean a different folder
    in every working directory, so a dataset fetched in one would be fetched again in the next.
    """
    chosen = os.environ.get("CONVSCOPE_DATA_HOME")
    if chosen:
        if not os.path.isabs(chosen):
            what = "an absolute path (the folder of downloaded datasets)"
            raise ConfigError(f"CONVSCOPE_DATA_HOME must be {what}. Received: {chosen!r}")
        return Path(chosen)
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "convscope" / "datasets"


def dataset_folder(name: str) -> Path:
    """The default folder of dataset `name` ("cifar10", ...): data_home() / name."""
    return data_home() / name
