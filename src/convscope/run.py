"""The run folder: everything a training run leaves behind, and the one way back from disk to a usable model.

runs/NAME/
  config.yaml               the resolved training settings, the data (classes, normalisation) and the spec's input
  spec.yaml                 the network
  checkpoint.safetensors    everything --resume needs, in one file replaced atomically (training/checkpoint_file.py)
  metrics.csv               one row per epoch          } copies of what the checkpoint holds, rewritten after
  weights/best.safetensors, weights/last.safetensors   } each checkpoint: readers always find complete files
  train.log, results.json   the log of every segment of training; the test results
  evaluation.json           a classifier's test evaluation (confusion matrix, per class), saved when it is made;
  detection.json            a detector's (COCO mAP, per-class AP, precision–recall): both stamped with the sha256
                            of weights/best.safetensors, so readers take them only while those weights are the same
  report.html, curves.png   the report and its pictures: a classifier's confusion.png, wrong.png, featuremaps/;
                            a detector's pr_curves.png, predictions.png, coco_eval.txt (pycocotools' summary)
  featuremaps/, detections/, export/   what `featuremaps`, `detect predict` and `export` write by default
  .lock                     held by the one training that writes the folder (run_lock.py; its holder written inside)
  progress.json             where the training is inside its epoch (training/live.py), rewritten once a second
  filmstrip/                "watch it learn": epoch-NNNN.npz (the first conv layer's filters and a probe image's
                            feature maps at that epoch; training/filmstrip.py) and probe.png, the probe image

Every name is defined here, once; the modules that write these files take their names from here.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from convscope.config import TrainConfig
from convscope.errors import CheckpointError, ConvscopeError, OutputError
from convscope.files import atomic_write_text, is_temp_file_of, remove_temp_files, written_by_convscope
from convscope.spec import NetSpec, load_spec
from convscope.userfiles import parse_json, read_bytes, read_text
from convscope.yamlfile import read_yaml

CONFIG, SPEC, CHECKPOINT, METRICS, RESULTS, LOG, LOCK = (
    "config.yaml",
    "spec.yaml",
    "checkpoint.safetensors",
    "metrics.csv",
    "results.json",
    "train.log",
    ".lock",
)
REPORT, CURVES, CONFUSION, WRONG, PR_CURVES, PREDICTIONS, COCO_EVAL = (
    "report.html",
    "curves.png",
    "confusion.png",
    "wrong.png",
    "pr_curves.png",
    "predictions.png",
    "coco_eval.txt",
)
WEIGHTS, FEATUREMAPS, DETECTIONS, EXPORT = "weights", "featuremaps", "detections", "export"  # folders
PATTERNS = "patterns"  # folder: the report's pictures of what filters look for (inspect.patterns)
EVALUATION = "evaluation.json"  # a classifier's test evaluation: confusion matrix, per-class numbers (classify/)
DETECTION_EVALUATION = "detection.json"  # a detector's: COCO mAP, per-class AP, precision–recall curves (detect/)
PROGRESS = "progress.json"  # the running epoch's progress (training/live.py)
FILMSTRIP, PROBE = "filmstrip", "probe.png"  # folder: a snapshot per epoch (training/filmstrip.py); its probe image
FILMSTRIP_FILE = re.compile(r"epoch-(\d{4,6})\.npz")  # one snapshot: its epoch, 0 before the first


def filmstrip_file(epoch: int) -> str:
    """'epoch-0003.npz': the file name of the film strip's snapshot after `epoch` epochs, in FILMSTRIP."""
    return f"epoch-{epoch:04d}.npz"


def weights_file(which: str) -> str:
    """'best.safetensors' or 'last.safetensors': the file name of the run's best or last weights, in WEIGHTS."""
    return f"{which}.safetensors"


_STARTED_FILES = (CONFIG, SPEC, METRICS, LOG, PROGRESS)  # what a training writes before its first checkpoint
# Every name a run folder holds (files and folders); anything else in a folder means it is not (only) a run's.
_RUN_FILES = (CONFIG, SPEC, CHECKPOINT, METRICS, RESULTS, LOG, REPORT, CURVES, CONFUSION, WRONG, PR_CURVES)
_RUN_FILES += (PREDICTIONS, COCO_EVAL, EVALUATION, DETECTION_EVALUATION, PROGRESS)
_RUN_NAMES = frozenset((*_RUN_FILES, LOCK, WEIGHTS, FEATUREMAPS, DETECTIONS, EXPORT, PATTERNS, FILMSTRIP))
_WEIGHT_FILES = (weights_file("best"), weights_file("last"))


@dataclass(frozen=True)
class DataInfo:
    name: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of the training images scaled to [0, 1]
    std: tuple[float, ...]
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
        }


@dataclass(frozen=True)
class Run:
    path: Path
    config: TrainConfig
    spec: NetSpec
    data: DataInfo

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    def metrics(self) -> list[dict[str, float]]:
        """metrics.csv's rows ([] before the first epoch). Raises CheckpointError when the file is damaged."""
        path = self.path / METRICS
        if not path.is_file():  # absent (no epoch yet), or not a regular file, which is never read (a pipe blocks)
            return []
        text = read_text(path, what="metrics.csv", error=CheckpointError)  # 16 MiB: 100,000 epochs are ~6 MiB
        try:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text, newline=""))]
        except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as err:
            raise CheckpointError(f"{path}: damaged metrics ({err})") from None

    def trained_on(self, data: str | None, data_dir: str | None = None) -> bool:
        """Whether `data` (and `data_dir`) name the run's own dataset: None, or what it was trained with."""
        return data in (None, self.config.data) and data_dir in (None, self.config.data_dir)

    def results(self) -> dict[str, Any]:
        """results.json ({} until the run has been tested). Raises CheckpointError when it is damaged."""
        path = self.path / RESULTS
        if not path.is_file():
            return {}
        try:  # bounded: 16 MiB, nesting 100, checked before parsing (convscope.userfiles)
            results = parse_json(read_bytes(path, what="results file", error=CheckpointError))
        except (ValueError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path}: damaged results ({err})") from None
        if not isinstance(results, dict) or not all(isinstance(k, str) for k in results):
            raise CheckpointError(f"{path}: damaged results (expected a mapping of names to values)")
        return results

    def config_yaml(self) -> str:
        body = {
            "train": self.config.to_dict(),
            "data": self.data.to_dict(),
            "input": "x".join(map(str, self.spec.input)),
        }
        return yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def new_run_folder(config: TrainConfig) -> tuple[Path, bool]:
    """config.out, or runs/MODEL-DATA with -2, -3 ... appended: an existing run is never overwritten.

    Returns the folder and whether it was made here (so a training that fails before its first checkpoint can remove
    it). Claiming a new folder is one `mkdir`, which only one process can win; config.out is checked under its lock
    (`claim_run_folder`). Raises OutputError when the folder cannot be made.
    """
    try:
        if config.out:
            path = Path(config.out)
            made = not path.exists()
            path.mkdir(parents=True, exist_ok=True)
            return path, made
        data = Path(config.data.rstrip("/"))
        base = Path("runs") / f"{Path(config.model).stem}-{data.stem if data.suffix == '.npz' else data.name}"
        base.parent.mkdir(parents=True, exist_ok=True)
        path, n = base, 1
        while True:
            try:
                path.mkdir()
                return path, True
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}-{n}")
    except OSError as err:
        raise OutputError(f"{err.filename or config.out}: cannot make the run folder ({err.strerror})") from None


def check_run_folder_is_free(path: Path) -> None:
    """Under the folder's lock: refuse a folder that holds a run with a checkpoint. A run that never reached its first
    checkpoint holds nothing worth keeping and is started over. Raises CheckpointError."""
    check_not_foreign(path)
    remove_run_temp_files(path)  # left by a training killed before its first checkpoint
    if (path / CONFIG).exists():
        _remove_started(path)


def check_not_foreign(path: Path) -> None:
    """Refuse, before anything is written, a folder given as --out that holds a run with a checkpoint
    (CheckpointError: --resume continues it), what no convscope run writes (a user's files; a picture carrying
    convscope's mark, such as a gradcam drawn in the run, is not one), or a config.yaml that is not a run's:
    training there would replace or delete them (OutputError). An empty folder and the folder of a run that never
    reached its first checkpoint pass."""
    if (path / CHECKPOINT).exists() or (path / RESULTS).exists():
        raise CheckpointError(f"{path}: already holds a run; resume it with --resume {path} or choose another --out")
    foreign = sorted(
        p.name
        for p in path.iterdir()
        if p.name not in _RUN_NAMES and not is_temp_file_of(p.name, _RUN_FILES) and not written_by_convscope(p)
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputError(
            f"{path}: is not empty and not a convscope run (it holds {shown}); give --out a new or empty folder; "
            "nothing was changed"
        )
    if (path / CONFIG).is_file() and not _is_run_config(path / CONFIG):
        raise OutputError(
            f"{path / CONFIG}: is not a convscope run's config; give --out another folder; nothing was changed"
        )


def _is_run_config(file: Path) -> bool:
    """Whether a config.yaml is one a training wrote (its `train` and `data` sections), not a user's own file."""
    try:
        body = read_yaml(file, CheckpointError, "run config")
    except ConvscopeError:
        return False
    return isinstance(body, dict) and {"train", "data"} <= body.keys()


def remove_run_temp_files(path: Path) -> list[Path]:
    """The temporary files a killed training's atomic writes left: its own files' only, in the run folder and its
    weights/ folder, never anywhere else (a user's hidden files and other folders are never looked at)."""
    strip = path / FILMSTRIP
    return (
        remove_temp_files(path, _RUN_FILES)
        + remove_temp_files(path / WEIGHTS, _WEIGHT_FILES)
        + remove_temp_files(strip, _filmstrip_names(strip, temporary=True))
    )


def _filmstrip_names(folder: Path, temporary: bool = False) -> list[str]:
    """The film strip's own file names in `folder` (probe.png, epoch-NNNN.npz); with `temporary`, the names that its
    atomic writes' temporary files there are for (`.epoch-0003.npz.XXXXXXXX.tmp` → epoch-0003.npz)."""
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return []
    if temporary:
        names = [n[1:].split(".tmp")[0].rsplit(".", 1)[0] for n in names if n.startswith(".") and n.endswith(".tmp")]
    return [n for n in names if n == PROBE or FILMSTRIP_FILE.fullmatch(n)]


def _remove_started(path: Path) -> None:
    """What a training writes before its first checkpoint: _STARTED_FILES, and the film strip's snapshot of the
    untrained network (its own files only; the folder itself when it is left empty)."""
    for name in _STARTED_FILES:
        (path / name).unlink(missing_ok=True)
    strip = path / FILMSTRIP
    if strip.is_dir() and not strip.is_symlink():
        for name in _filmstrip_names(strip):
            (strip / name).unlink(missing_ok=True)


def remove_unfinished(path: Path, made: bool) -> None:
    """After a training failed before its first checkpoint: remove what it wrote, so a retry with the same --out
    starts cleanly, and the folder itself when this training made it. The user's own files are never touched.
    Called while holding the folder's lock."""
    if (path / CHECKPOINT).exists():
        return
    _remove_started(path)
    for folder in (WEIGHTS, FILMSTRIP):
        with contextlib.suppress(OSError):
            (path / folder).rmdir()  # only when empty
    with contextlib.suppress(OSError):
        if made and {p.name for p in path.iterdir()} == {LOCK}:
            # Unlinking a held lock file is safe here: a waiting writer re-checks (RunLock) that it locked the
            # file the folder still has.
            (path / LOCK).unlink()
            path.rmdir()


def load_run(path: Run | str | Path) -> Run:
    """Read a run folder's config.yaml and spec.yaml (the model itself: convscope.loaded); a Run is returned as it is.
    Raises CheckpointError for a folder that is not a run, or whose files are damaged."""
    if isinstance(path, Run):
        return path
    path = Path(path)
    config_file = path / "config.yaml"
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run folder")
    if not config_file.is_file():
        raise CheckpointError(f"{path}: not a run folder (no config.yaml)")
    try:
        body = read_yaml(config_file, CheckpointError, "run config")  # bounded; its errors pass through
        data = body["data"]
        info = DataInfo(data["name"], tuple(data["classes"]), tuple(data["mean"]), tuple(data["std"]), data["source"])
        config = TrainConfig.from_dict(body["train"], where=str(config_file))
    except (yaml.YAMLError, KeyError, TypeError) as err:
        raise CheckpointError(f"{config_file}: damaged run config ({err})") from None
    spec = load_spec(path / SPEC)
    _check_data_info(info, spec.input[-1], config_file)
    return Run(path, config, spec, info)


def _check_data_info(info: DataInfo, channels: int, where: Path) -> None:
    """The data entries of a run's config.yaml, which normalise every image the model sees: refused when edited
    into values no training could have written."""

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    problems = []
    if not isinstance(info.name, str) or not isinstance(info.source, str):
        problems.append("name and source must be text")
    if not info.classes or not all(isinstance(c, str) for c in info.classes):
        problems.append(f"classes must be a list of names. Received: {str(info.classes)[:60]}")
    if len(info.mean) != channels or not all(number(m) and 0 <= m <= 1 for m in info.mean):
        problems.append(f"mean must be {channels} number(s) in [0, 1]. Received: {str(info.mean)[:60]}")
    if len(info.std) != channels or not all(number(s) and 0 < s <= 1 for s in info.std):
        problems.append(f"std must be {channels} number(s) in (0, 1]. Received: {str(info.std)[:60]}")
    if problems:
        raise CheckpointError(f"{where}: damaged run config: data: {problems[0]}")


def write_evaluation(run: Run, name: str, body: dict[str, Any]) -> None:
    """Write a test evaluation of the run's best weights (EVALUATION, DETECTION_EVALUATION) as JSON, atomically,
    stamped with those weights' sha256 (`read_evaluation` takes it back only while they are unchanged)."""
    atomic_write_text(run.path / name, json.dumps({"weights_sha256": _best_weights_digest(run), **body}))


def read_evaluation(run: Run, name: str) -> dict[str, Any] | None:
    """The body `write_evaluation` wrote to `name`, or None when there is none or it is stale: written by an older
    convscope (no stamp) or for other best weights (a resumed training replaced them). CheckpointError when the file
    is damaged."""
    path = run.path / name
    if not path.is_file():
        return None
    try:  # bounded as results.json is
        body = parse_json(read_bytes(path, what="test evaluation", error=CheckpointError))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: damaged evaluation ({err})") from None
    if not isinstance(body, dict):
        raise CheckpointError(f"{path}: damaged evaluation (expected a mapping of names to values)")
    stamp = body.pop("weights_sha256", None)
    return body if stamp is not None and stamp == _best_weights_digest(run) else None


def _best_weights_digest(run: Run) -> str | None:
    """sha256 of weights/best.safetensors (what evaluate, predict and export use); None before there are any. A few
    milliseconds for a small network, about 0.1 s per 100 MB."""
    try:
        with (run.weights / weights_file("best")).open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return None
