"""`convscope train --nproc N`: the same command in N processes on this machine, started by PyTorch's own launcher.

This is `torchrun --standalone --nproc-per-node N --max-restarts K -m convscope train …` (torch.distributed.run,
with a rendezvous on this machine), run from the command itself so that nobody has to know torchrun's flags: the
workers find RANK, WORLD_SIZE … in their environment and train as one (training/distributed.py). With
`--max-restarts K`, after a worker dies torchrun stops the others and starts them all again, up to K times; they
resume the run from its last checkpoint by themselves, so a new run gets its folder here, before they start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

from convscope.config import TrainConfig
from convscope.errors import ConvscopeError, WorkersFailed
from convscope.run import CHECKPOINT, new_run_folder, remove_unfinished
from convscope.run_lock import RunLock


def launch(argv: list[str], nproc: int, max_restarts: int, config: TrainConfig | None) -> None:
    """Run `convscope ARGV` (a train command line, --nproc included: the workers check it) in `nproc` processes.

    `config`: a new run's settings, whose folder is made here when the command names none (--out is added), so that
    restarted workers find it; None when resuming. Returns when every worker has finished; raises WorkersFailed
    with the failed rank's exit status otherwise (the workers have printed their errors), after removing a folder
    made here that holds no checkpoint.
    """
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    made, folder = False, None
    if config is not None:
        if config.out is None:
            path, made = new_run_folder(config)
            argv = [*argv, "--out", str(path)]
        folder = Path(config.out or path)
    # torchrun's agent warns as it stops workers after a failure or Ctrl-C, which the workers and this command's
    # one line already say; its errors (which process failed, and how) still show.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)
    # Each worker's share of the cores (torchrun would set 1 and warn); the trainer sets the same number.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = torchrun.get_args_parser().parse_args(
        [
            "--standalone",
            f"--nproc-per-node={nproc}",
            f"--max-restarts={max_restarts}",
            "--module",
            "--",
            "convscope",
            *argv,
        ]
    )
    try:
        torchrun.run(args)
    except ChildFailedError as err:
        rank, failure = min(err.failures.items())
        code = failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode  # -15: killed by SIGTERM
        _remove_if_unfinished(folder, made)
        restarts = f" after {max_restarts} restart{'s' if max_restarts != 1 else ''}" if max_restarts else ""
        raise WorkersFailed(f"rank {rank} of {nproc} exited with status {code}{restarts}", code) from None
    except SignalException as err:  # Ctrl-C: the workers got it too, and rank 0 said where it saved
        _remove_if_unfinished(folder, made)
        raise WorkersFailed(f"stopped by {signal.Signals(err.sigval).name}", 128 + err.sigval) from None


def _remove_if_unfinished(folder: Path | None, made: bool) -> None:
    """The folder made here, when the workers left nothing to resume in it."""
    if made and folder is not None and not (folder / CHECKPOINT).exists():
        with contextlib.suppress(ConvscopeError), RunLock(folder):
            remove_unfinished(folder, made)
