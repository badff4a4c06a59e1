"""train.log on a disk that fills up mid-training: one warning naming the file, no logging tracebacks."""

import logging
from pathlib import Path

import pytest

from convscope.training.runtime import log_file

FULL = Path("/dev/full")  # every write fails with ENOSPC, as on a full disk


@pytest.mark.skipif(not FULL.exists(), reason="/dev/full is not on this system")
def test_a_full_disk_under_train_log_is_said_once_and_the_log_goes_on_in_the_terminal(caplog, capsys):
    logger = logging.getLogger("convscope.train")
    with caplog.at_level(logging.INFO, logger="convscope"), log_file(FULL):
        for epoch in range(5):
            logger.info("epoch %d", epoch)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["/dev/full: cannot write (No space left on device); the log goes on in the terminal only"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [f"epoch {i}" for i in range(5)]
    assert "Logging error" not in capsys.readouterr().err
    assert not any(isinstance(h, logging.FileHandler) for h in logging.getLogger("convscope").handlers)


def test_train_log_gets_every_line_when_the_disk_has_room(tmp_path):
    path = tmp_path / "train.log"
    with log_file(path):
        logging.getLogger("convscope.train").info("epoch 1/1: train_loss 0.5")
    assert path.read_text().rstrip().endswith("INFO convscope.train: epoch 1/1: train_loss 0.5")
