"""CIFAR-10 from an image folder (`../shared/data/cifar10-jpg`): the TensorFlow CNN tutorial in Keras, as published
(10 epochs, batch 32, Adam, the folder read with `image_dataset_from_directory`), against convscope's cifar-3conv
(the same net, 10 epochs, convscope's default recipe) and cifar-fast (its own recipe), on the same folder and cores.

    .venv/bin/python bench/cifar.py [--keras] [--seeds 0,1,2] [--models cifar-3conv,cifar-fast] [--folder DIR]

Every engine evaluates the 10,000 test images after each epoch (the tutorial's `validation_data`), and its rows give
test accuracy and wall seconds since the process was launched: interpreter, imports, reading the folder, training
and those test passes included. convscope runs in a subprocess of this script (`--worker`), calling `convscope.train`
as `convscope train --model M --data FOLDER --seed S` would (less the report it writes at the end), with a callback
that scores the epoch's weights on the test images (the same mirror-image averaging as its final test pass, when the
run trains on flips; the callback reads the test images from the decoded cache before the first epoch). Its first run of
the session reads the JPEGs into an empty decoded cache (cold); later runs find them there (warm). The last row of a
convscope run is its own final test accuracy (results.json). Results: bench/results/cifar.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)
import keras_env  # noqa: E402

FOLDER = common.ROOT.parent / "shared" / "data" / "cifar10-jpg"
RUN_TIMEOUT = 3600  # seconds per training run
# cifar-3conv is the tutorial's net, trained for the tutorial's 10 epochs (with convscope's default recipe otherwise);
# cifar-fast brings its own recipe.
MODEL_SETTINGS = {"cifar-3conv": {"epochs": 10}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(p)
    p.add_argument("--seeds", default="0", help="seeds, e.g. 0,1,2 (default 0)")
    p.add_argument("--models", default="cifar-3conv,cifar-fast", help="convscope presets (default both)")
    p.add_argument("--folder", type=Path, default=FOLDER, help=f"CIFAR-10 as train/ and test/ folders ({FOLDER})")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # JSON: one convscope run, in this subprocess
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.models = [m for m in args.models.split(",") if m.strip()]
    return args


# -- convscope, in a worker process --------------------------------------------------------------------------------
def worker(job: dict) -> dict:
    """One convscope training with a test pass after every epoch, in this process (launched at job['launched'])."""
    import torch

    from convscope import train
    from convscope.data.load import load_dataset
    from convscope.loaded import load_predictor
    from convscope.preprocess import predict_logits, run_stats, to_tensor
    from convscope.training.callbacks import Callback

    rows: list[dict] = []

    class TestEachEpoch(Callback):
        def on_start(self, run, epochs, batches, epoch):
            self.run, self.started = run, time.time()
            test = load_dataset(run.config.data, None, run.spec.input, run.config.seed).test  # from the cache
            self.x, self.y = to_tensor(test.images), torch.from_numpy(test.labels)
            self.mean, self.std = run_stats(run)

        def on_epoch(self, row):
            t = time.perf_counter()
            logits = predict_logits(load_predictor(self.run, "last"), self.x, self.mean, self.std)
            accuracy = float((logits.argmax(1) == self.y).float().mean())
            rows.append(
                {
                    "epoch": int(row["epoch"]),
                    "test_acc": accuracy,
                    "val_acc": row.get("val_acc"),
                    "train_seconds": row["seconds"],
                    "test_seconds": time.perf_counter() - t,
                    "wall_since_launch": time.time() - job["launched"],
                }
            )

    callback = TestEachEpoch()
    settings = {"model": job["model"], "data": job["folder"], "seed": job["seed"], "out": job["out"]}
    run = train(callbacks=[callback], report=False, **settings, **job.get("extra", {}))
    results = run.results()
    return {
        "engine": "convscope",
        "model": job["model"],
        "seed": job["seed"],
        "seconds_to_first_epoch": callback.started - job["launched"],  # imports and reading the folder
        "epochs": rows,
        "final_test_acc": results["test_acc"],
        "final_wall": time.time() - job["launched"],
        "recipe": {k: getattr(run.config, k) for k in ("epochs", "batch_size", "optimizer", "lr", "precision")},
    }


def run_convscope(model: str, seed: int, folder: Path, out: Path, cache: Path, extra: dict) -> dict:
    job = {
        "model": model,
        "seed": seed,
        "folder": str(folder),
        "out": str(out),
        "extra": extra,
        "launched": time.time(),
    }
    env = os.environ | {"CONVSCOPE_CACHE_DIR": str(cache)}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT,
        cwd=common.ROOT,
    )
    if done.returncode:
        raise RuntimeError(f"convscope {model} seed {seed} failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the benchmark ----------------------------------------------------------------------------------------------------
def _small_copy(folder: Path, to: Path, train: int = 40, test: int = 10) -> Path:
    """--quick: the first `train` / `test` images of each class, copied (a smoke test, not a benchmark)."""
    for split, count in (("train", train), ("test", test)):
        for class_dir in sorted(p for p in (folder / split).iterdir() if p.is_dir()):
            (to / split / class_dir.name).mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:count]:
                shutil.copy(image, to / split / class_dir.name / image.name)
    return to


def _line(result: dict) -> str:
    rows = result["epochs"]
    cells = " ".join(f"{r['test_acc']:.1%}@{r['wall_since_launch']:.0f}s" for r in rows)
    return f"  seed {result['seed']}: {cells}"


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    if not (args.folder / "train").is_dir() or not (args.folder / "test").is_dir():
        sys.exit(f"bench/cifar.py: no CIFAR-10 folder with train/ and test/ at {args.folder}")
    facts = common.machine_facts(args.threads)
    work = Path(tempfile.mkdtemp(prefix="convscope-bench-cifar-"))
    cache = work / "cache"  # empty: the first convscope run reads the JPEGs cold
    folder = _small_copy(args.folder, work / "small") if args.quick else args.folder
    # convscope measures its own thread count (training/autotune.py) unless --threads was given
    given = any(a.startswith("--threads") for a in (sys.argv[1:] if argv is None else argv))
    extra = ({"threads": args.threads} if given else {}) | ({"epochs": 1} if args.quick else {})
    results: dict = {"machine": facts, "folder": str(folder), "convscope": {}, "keras": []}
    try:
        for model in args.models:
            results["convscope"][model] = []
            for seed in args.seeds:
                cold = not any(results["convscope"].values())
                settings = MODEL_SETTINGS.get(model, {}) | extra
                r = run_convscope(model, seed, folder, work / f"{model}-{seed}", cache, settings)
                r["cache"] = "cold" if cold else "warm"
                results["convscope"][model].append(r)
                print(
                    f"convscope {model} ({r['cache']} cache):\n{_line(r)}  final {r['final_test_acc']:.2%} "
                    f"in {r['final_wall']:.0f} s",
                    flush=True,
                )
        if args.keras:
            env, why = keras_env.ensure(install=True)
            if env is None:
                sys.exit(f"bench/cifar.py: {why}")
            for seed in args.seeds:
                job = {"task": "cifar_folder", "folder": str(folder), "epochs": 1 if args.quick else 10}
                job |= {"batch_size": 32, "threads": args.threads, "seed": seed, "launched": time.time()}
                r = keras_env.run_worker(env, job, RUN_TIMEOUT) | {"seed": seed}
                results["keras"].append(r)
                print(f"keras tutorial CNN:\n{_line(r)}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, runs in [*results["convscope"].items(), ("keras", results["keras"])]:
        if runs:
            finals = [r.get("final_test_acc", r["epochs"][-1]["test_acc"]) for r in runs]
            walls = [r.get("final_wall", r["epochs"][-1]["wall_since_launch"]) for r in runs]
            print(
                f"{name}: median test accuracy {statistics.median(finals):.2%} "
                f"(range {min(finals):.2%}–{max(finals):.2%}), median wall {statistics.median(walls):.0f} s"
            )
    print(f"results: {common.write_json(common.result_name('cifar', args), results)}")


if __name__ == "__main__":
    main()
