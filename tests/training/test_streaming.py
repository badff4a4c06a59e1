"""An image folder larger than the memory budget streams from disk: the same images in the same order as in memory,
so the same weights, and a stopped streamed run resumes exactly."""

import signal

import pytest
from helpers import make_folder
from safetensors.torch import load_file

from convscope.errors import Interrupted
from convscope.signals import StopRequest
from convscope.tasks.train import train
from convscope.training.callbacks import Callback


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"), per_class=40)


def settings(folder, out, **kw):
    return {
        "model": "lenet5",
        "data": str(folder),
        "epochs": 2,
        "batch_size": 16,
        "threads": 1,
        "augment": "flip,translate=2",  # augmentation draws are part of what must match
        "out": str(out),
        "report": False,
    } | kw


def rows(run):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in run.metrics()]


def same_weights(a, b) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all((x[k] == y[k]).all() for k in x)


@pytest.fixture(scope="module")
def streamed(folder, tmp_path_factory):
    return train(**settings(folder, tmp_path_factory.mktemp("s") / "run", cache_limit="0"))


def test_a_streamed_folder_trains_exactly_the_weights_of_the_in_memory_one(folder, streamed, tmp_path, caplog):
    with caplog.at_level("INFO", logger="convscope"):
        again = train(**settings(folder, tmp_path / "again", cache_limit="0"))
    assert "exceed the memory budget of 0 B: streaming them from disk" in caplog.text
    memory = train(**settings(folder, tmp_path / "memory"))
    assert rows(streamed) == rows(memory) == rows(again)
    assert streamed.results()["test_acc"] == memory.results()["test_acc"]
    assert same_weights(streamed.weights / "best.safetensors", memory.weights / "best.safetensors")
    assert same_weights(streamed.weights / "last.safetensors", memory.weights / "last.safetensors")


class StopAt(Callback):
    """Asks the trainer to stop (as SIGTERM does) after batch `batch` of epoch `epoch` (0-based)."""

    def __init__(self, stop: StopRequest, epoch: int, batch: int):
        self.stop, self.epoch, self.batch = stop, epoch, batch

    def on_batch(self, epoch, batch, loss, accuracy, images_per_s):
        if (epoch, batch) == (self.epoch, self.batch):
            self.stop.signal = signal.SIGTERM


@pytest.mark.parametrize("resumed_with", [None, "8GiB"])  # streamed again, or in memory: the same run either way
def test_a_streamed_run_stopped_mid_epoch_resumes_exactly(folder, streamed, tmp_path, resumed_with):
    stop = StopRequest()
    out = tmp_path / "stopped"
    with pytest.raises(Interrupted, match="epoch 2, batch 2/"):
        train(**settings(folder, out, cache_limit="0"), stop=stop, callbacks=[StopAt(stop, 1, 2)])
    resumed = train(resume=out, report=False, cache_limit=resumed_with)
    assert resumed.config.cache_limit == (resumed_with or "0")
    assert rows(resumed) == rows(streamed)
    assert same_weights(resumed.weights / "last.safetensors", streamed.weights / "last.safetensors")
