"""The tasks a convnet is trained for, and the one place that says which task a spec is."""

from __future__ import annotations

from convscope.spec import NetSpec
from convscope.tasks.classify import ClassifyTask
from convscope.tasks.detect import DetectTask
from convscope.training.task import Task

__all__ = ["ClassifyTask", "DetectTask", "Task", "task_for"]


def task_for(spec: NetSpec) -> type[Task]:
    """The task of a spec: detection when its last layer is `detect`, else classification."""
    return DetectTask if spec.is_detector else ClassifyTask
