"""convscope.evaluate and convscope.write_report: a run folder's test evaluation and its report, whichever task the
run is for; classifier_run and detector_run refuse a run of the other task for the commands that need one. Which
task a run is for is asked here (convscope.tasks.task_of), above the task folders that do the work."""

from __future__ import annotations

from pathlib import Path

from convscope.classify.evaluate import Evaluation, evaluation_of
from convscope.classify.report import write_report as write_classifier_report
from convscope.errors import SpecError
from convscope.run import Run, load_run
from convscope.tasks import ClassifyTask, DetectTask, task_of


def evaluate(
    run: Run | str | Path, data: str | None = None, data_dir: str | None = None, device: str = "auto"
) -> Evaluation:
    """A classifier run's test evaluation (accuracy, per-class numbers, confusion matrix): the one training saved
    while its best weights are unchanged, else scored on the test split of its data (or of `data`) on `device`.
    Raises SpecError for a detector (`convscope detect evaluate`, or `Run.evaluate`), DataError for data that cannot
    be read, ConfigError for a device this machine lacks."""
    return evaluation_of(classifier_run(run, "evaluate"), data, data_dir, device)


def write_report(run: Run | str | Path, evaluation: Evaluation | None = None, wrong: int = 8) -> Path:
    """Write the run's report.html and its pictures; return its path. A classifier's has the curves, the per-class
    numbers (`evaluation`'s, else the saved ones), the `wrong` most confidently wrong test images, feature maps and
    patterns; a detector's has mAP, precision–recall curves and boxes on test images."""
    run = load_run(run)
    if task_of(run) is ClassifyTask:  # a classifier's report takes a fresh evaluation and its number of mistakes
        return write_classifier_report(run, evaluation, wrong)
    return task_of(run).report(run)


def classifier_run(run: Run | str | Path, command: str) -> Run:
    """The run (loaded when given as a path), which must be a classifier: a detector's `command` is one of
    `convscope detect ...`. Raises SpecError for another task's run, CheckpointError for a folder without a run."""
    run = load_run(run)
    if (task := task_of(run)) is not ClassifyTask:
        raise SpecError(f"{run.path} is a detector: use {task.command} {command} {run.path} ...")
    return run


def detector_run(run: Run | str | Path) -> Run:
    """The run (loaded when given as a path), which must be a detector. Raises SpecError for another task's run,
    CheckpointError for a folder without a run."""
    run = load_run(run)
    if task_of(run) is not DetectTask:
        raise SpecError(f"{run.path}: not a detector (its last layer is {run.spec.layers[-1].layer_type}, not detect)")
    return run
