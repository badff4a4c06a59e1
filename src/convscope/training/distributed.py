"""More than one process: torchrun's workers as one training, with PyTorch's DistributedDataParallel (DDP).

torchrun (torch.distributed.run) starts the processes and tells each where it stands in environment variables:
RANK (0 … WORLD_SIZE-1 over every machine), LOCAL_RANK (on this machine: which GPU), WORLD_SIZE, LOCAL_WORLD_SIZE,
and, for workers it restarted, TORCHELASTIC_RESTART_COUNT. `Group.from_env()` reads them. A process on its own is a
Group of one, whose collective methods return their input at once, so the trainer has one path for both.

How the processes make one training:
- the same start: every rank seeds torch with the run's seed before it builds the network (and DDP copies rank 0's
  weights and buffers to the others when it wraps the model);
- each step's images: the epoch's seeded order is cut into global batches of batch_size × WORLD_SIZE images and
  rank r trains on the r-th part of each (`shard`); DDP averages the gradients, so one step equals one process's
  step on the whole global batch;
- their own draws: augmentation and dropout are seeded per rank (`rank_seed`), rank 0 as a single process is;
- one writer: rank 0 claims the run folder, writes every file, validates and tests; the others wait for its answer
  where they need one (`on_main`), and its errors reach them as `PeerFailed`.
Collectives run on the backend of the device, not on what is installed (NCCL reports itself available on machines
without a GPU): NCCL for CUDA GPUs, gloo for the CPU.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import gc
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from convscope.device import resolve_device
from convscope.errors import CheckpointError, ConfigError, PeerFailed

log = logging.getLogger("convscope.train")
T = TypeVar("T")
# How long a rank waits for the others at one collective. Rank 0 alone loads and decodes the data first (the others
# then read the decoded-folder cache) and validates while the others wait, so this is generous; a peer that died
# closes its sockets and is noticed at once, not after this.
TIMEOUT = datetime.timedelta(minutes=30)
RANK_SEED_STEP = 1_000_003  # rank r's augmentation and dropout seed: seed + r × this (a prime: no overlap with seed+1)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s augmentation and dropout draws; rank 0 keeps the run's seed (as one process does)."""
    return (seed + RANK_SEED_STEP * rank) % 2**63


def _int_env(env: Mapping[str, str], name: str, default: int, low: int = 0) -> int:
    text = env.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise ConfigError(f"environment variable {name} must be an integer >= {low}. Received: {text[:40]!r}")
    return value


class Group:
    """This process's place among torchrun's workers (see the module's docstring). `Group()` is one process alone."""

    def __init__(
        self, rank=0, local_rank=0, world_size=1, local_world_size=1, restart=0, max_restarts=0, launched=False
    ) -> None:  # fmt: skip
        self.rank, self.local_rank, self.world_size = rank, local_rank, world_size
        self.local_world_size, self.restart, self.max_restarts = local_world_size, restart, max_restarts
        self.launched = launched  # started by torchrun (RANK is set), even as its only process
        self.device: torch.device | None = None  # of the collectives: set by joined()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Group:
        """The group torchrun described in `env`; one process alone where RANK and WORLD_SIZE are not set.
        Raises ConfigError for values that are not counts, or a RANK outside WORLD_SIZE."""
        world = _int_env(env, "WORLD_SIZE", 1, low=1)
        rank = _int_env(env, "RANK", 0)
        if rank >= world:
            raise ConfigError(f"environment variable RANK is {rank}; expected 0 to {world - 1} (WORLD_SIZE {world})")
        return cls(
            rank=rank,
            local_rank=_int_env(env, "LOCAL_RANK", 0),
            world_size=world,
            local_world_size=_int_env(env, "LOCAL_WORLD_SIZE", world, low=1),
            restart=_int_env(env, "TORCHELASTIC_RESTART_COUNT", 0),
            max_restarts=_int_env(env, "TORCHELASTIC_MAX_RESTARTS", 0),
            launched="RANK" in env,
        )

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run folder, validates, tests and reports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def line(self, batch_size: int) -> str:
        """'2 processes (gloo) × batch 32 = 64 images per step'; '' for one process."""
        if not self.distributed:
            return ""
        backend = dist.get_backend() if dist.is_initialized() else "not started"
        return (
            f"{self.world_size} processes ({backend}) × batch {batch_size} = {self.world_size * batch_size} images "
            "per step"
        )

    # -- devices and the process group ---------------------------------------------------------------------------
    def device_for(self, name: str) -> torch.device:
        """The device of this rank for the setting `name`: resolve_device's, where `auto` and `cuda` mean the GPU of
        LOCAL_RANK. Raises ConfigError for a device the processes cannot share: one named GPU (cuda:N) for several
        processes of a machine, a GPU index past the count, or Apple's MPS (DDP runs on CUDA GPUs or the CPU)."""
        device = resolve_device(name)
        if not self.distributed:
            return device
        if device.type == "mps":
            raise ConfigError("device mps: PyTorch's DistributedDataParallel runs on CUDA GPUs or the CPU; use cpu")
        if device.type != "cuda":
            return device
        if name not in ("auto", "cuda"):
            if self.local_world_size > 1:
                raise ConfigError(
                    f"device {name} names one GPU for {self.local_world_size} processes on this machine; use --device "
                    "cuda (each process takes the GPU of its LOCAL_RANK)"
                )
            return device
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise ConfigError(
                f"LOCAL_RANK {self.local_rank} needs GPU cuda:{self.local_rank}; this machine has {count} "
                f"(start at most {count} processes per machine)"
            )
        return torch.device("cuda", self.local_rank)

    @contextlib.contextmanager
    def joined(self, device: torch.device) -> Iterator[Group]:
        """The process group for the block: NCCL when `device` is a CUDA GPU, gloo otherwise (env:// rendezvous with
        torchrun's MASTER_ADDR and MASTER_PORT). One already started by the caller is used and left running; one
        started here is ended after the block. Raises ConfigError when it cannot be joined."""
        self.device = device
        if not self.distributed or dist.is_initialized():
            yield self
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            store = self._attempt_store()
            dist.init_process_group(backend, store=store, rank=self.rank, world_size=self.world_size, timeout=TIMEOUT)
        except (RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"rank {self.rank}: cannot join the other {self.world_size - 1} processes ({first})"
            ) from None
        try:
            yield self
        finally:
            # DDP's reducer holds the group, in a reference cycle: collected now, while its gloo threads can still be
            # joined. Left to the interpreter's exit, they were killed mid-call (measured: 1 in 4 resumed runs
            # aborted with "terminate called without an active exception").
            gc.collect()
            dist.destroy_process_group()

    def _attempt_store(self) -> dist.Store | None:
        """The rendezvous store of this attempt, or None for PyTorch's default (env://).

        torchrun's agent hosts one TCP store (MASTER_ADDR:MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE=True) for all of
        its attempts, and the workers' default process group writes the same keys in it every time. Workers that
        torchrun restarted would read the keys of the attempt that died (its workers' addresses: measured here,
        "Connection refused", or a hang), so each attempt's keys get a prefix of their own."""
        env = os.environ
        if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "MASTER_ADDR" not in env:
            return None
        port = _int_env(env, "MASTER_PORT", 0, low=1)
        shared = dist.TCPStore(env["MASTER_ADDR"], port, self.world_size, is_master=False, timeout=TIMEOUT)
        return dist.PrefixStore(f"convscope/attempt-{self.restart}", shared)

    # -- collectives: each is a no-op for one process -----------------------------------------------------------
    def sum(self, values: list[float]) -> list[float]:
        """The sums of `values` over every rank (float64), on every rank."""
        if not self.distributed:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def any(self, flag: bool) -> bool:
        """Whether `flag` is set on any rank: a decision every rank takes at the same step (e.g. stop here)."""
        return self.sum([float(flag)])[0] > 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, value: Any = None) -> Any:
        """Rank 0's `value` (JSON data: numbers, NaN included, strings, lists, dicts) on every rank, as JSON gives it
        back (tuples become lists) on rank 0 too, so that every rank goes on with the same value."""
        if not self.distributed:
            return value
        data = _send_bytes(json.dumps(value).encode() if self.is_main else b"", self.device)
        return json.loads(data)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (JSON data), in rank order, on every rank."""
        if not self.distributed:
            return [value]
        mine = json.dumps(value).encode()
        size = torch.tensor([len(mine)], dtype=torch.int64, device=self.device)
        sizes = [torch.empty_like(size) for _ in range(self.world_size)]
        dist.all_gather(sizes, size)
        longest = max(int(s) for s in sizes)
        padded = torch.zeros(longest, dtype=torch.uint8, device=self.device)
        padded[: len(mine)] = torch.frombuffer(bytearray(mine), dtype=torch.uint8)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return [json.loads(bytes(p[: int(n)].cpu().tolist())) for p, n in zip(parts, sizes, strict=True)]

    def on_main(self, work: Callable[[], T]) -> T:
        """Rank 0 does `work` and every rank gets its result (JSON data); when it fails, rank 0 raises its error and
        the others raise PeerFailed with the same message, instead of waiting for a step that never comes."""
        if not self.distributed:
            return work()
        return self._main_then(work, share=True) if self.is_main else self._outcome()

    def main_first(self, work: Callable[[], T]) -> T:
        """`work` on rank 0 first, then on the others: loading the data, which fills the decoded-folder cache the
        others then read instead of decoding again. Rank 0's failure stops the others (PeerFailed)."""
        if not self.distributed:
            return work()
        if self.is_main:
            return self._main_then(work, share=False)
        self._outcome()
        return work()

    def _main_then(self, work: Callable[[], T], share: bool) -> T:
        """Rank 0: `work`, then its outcome to the others (its JSON result when `share`)."""
        try:
            result = work()
        except BaseException as err:
            self.broadcast({"failed": str(err) or type(err).__name__})
            raise
        shared = self.broadcast({"result": result if share else None})["result"]
        return shared if share else result

    def _outcome(self) -> Any:
        """The other ranks: rank 0's result, or PeerFailed."""
        message = self.broadcast()
        if "failed" in message:
            raise PeerFailed(f"rank {self.rank}: rank 0 stopped: {message['failed']}")
        return message["result"]

    # -- the model -------------------------------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        """`model` in DistributedDataParallel (the parameters that train now; wrap again when that set changes), or
        `model` itself for one process. Buffers (BatchNorm's running statistics) are rank 0's: DDP broadcasts them
        at every forward pass."""
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    # -- resuming --------------------------------------------------------------------------------------------------
    def rank_states(self, generator: torch.Generator) -> list[dict[str, torch.Tensor]] | None:
        """The augmentation generator and torch RNG states of ranks 1 … WORLD_SIZE-1 (rank 0's are the checkpoint's
        own), for the checkpoint rank 0 writes; None for one process."""
        if not self.distributed:
            return None
        states = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        encoded = {k: base64.b64encode(bytes(v.tolist())).decode() for k, v in states.items()}
        gathered = self.gather(encoded)[1:]
        return [{k: torch.frombuffer(bytearray(base64.b64decode(v)), dtype=torch.uint8) for k, v in g.items()}
                for g in gathered]  # fmt: skip

    def restore_rank_state(self, states: list[dict[str, torch.Tensor]] | None, generator: torch.Generator) -> None:
        """Put back this rank's states saved by rank_states (rank 0's came back with the checkpoint)."""
        if not self.distributed or self.is_main:
            return
        mine = states[self.rank - 1]
        generator.set_state(mine["generator"])
        torch.set_rng_state(mine["torch"])
        if "cuda" in mine and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"], self.device)


def _send_bytes(data: bytes, device: torch.device) -> bytes:
    """Rank 0's `data` on every rank (the others pass b'')."""
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, 0)
    if dist.get_rank() == 0:
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    else:
        buffer = torch.empty(int(size), dtype=torch.uint8, device=device)
    dist.broadcast(buffer, 0)
    return bytes(buffer.cpu().tolist())


def batches_per_epoch(images: int, batch_size: int, world_size: int) -> int:
    """Steps in an epoch of `images` images: global batches of batch_size × world_size, the last one smaller; a last
    one with fewer images than processes is left out (each rank needs at least one image)."""
    step = batch_size * world_size
    full, rest = divmod(images, step)
    return full + (rest >= world_size)


def shard(order: torch.Tensor, batch_size: int, rank: int, world_size: int) -> list[tuple[torch.Tensor, float]]:
    """Rank `rank`'s part of each step of an epoch: (indices into the training split, loss weight).

    `order` (a permutation of the training split) is cut into global batches of batch_size × world_size images; each
    is split into world_size parts of equal size (the last, smaller batch into parts that differ by at most one
    image), and rank r takes part r. The loss weight makes DDP's mean of the ranks' gradients the mean over the
    global batch's images: part size × world_size ÷ global batch size (1 for a full batch). One process (world_size
    1) gets the batches of `order` as they are, with weight 1.
    """
    step, parts = batch_size * world_size, []
    for b in range(batches_per_epoch(len(order), batch_size, world_size)):
        chunk = order[b * step : (b + 1) * step]
        part = chunk.tensor_split(world_size)[rank]
        parts.append((part, len(part) * world_size / len(chunk)))
    return parts


def check_world_size(saved: int, group: Group, batch_size: int, where: object) -> None:
    """Refuse to resume a run with a number of processes other than the one it was trained with: the images of a
    step (batch_size × processes), the steps of an epoch and the learning-rate schedule depend on it.
    Raises CheckpointError. A value that is not a count is left to the checkpoint's own checks (resume.check_extra)."""
    if not isinstance(saved, int) or isinstance(saved, bool) or saved < 1 or saved == group.world_size:
        return
    how = "convscope train --resume RUN" if saved == 1 else f"convscope train --nproc {saved} --resume RUN"
    raise CheckpointError(
        f"{where}: was trained by {saved} process{'es' if saved > 1 else ''} ({saved * batch_size} images per step); "
        f"this is {group.world_size}. Resume it with {saved} ({how}, or torchrun with {saved} processes in all)"
    )
