"""The tasks a convnet is trained for, and the one place that says which task a spec is."""

from __future__ import annotations

from convscope.classify.task import ClassifyTask
from convscope.detect.task import DetectTask
from convscope.run import Run
from convscope.spec import NetSpec
from convscope.training.task import Task

__all__ = ["ClassifyTask", "DetectTask", "Task", "task_for", "task_of"]


def task_for(spec: NetSpec) -> type[Task]:
    """The task of a spec: detection when its last layer is `detect`, else classification."""
    return DetectTask if spec.is_detector else ClassifyTask


def task_of(run: Run) -> type[Task]:
    """The task of a run folder's network (see task_for)."""
    return task_for(run.spec)
