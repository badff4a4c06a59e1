"""Runs side by side, as plain data (the compare page's API, studio.compare): which runs were asked for, their curves
merged per epoch, their settings with the rows that differ marked, their per-class numbers aligned by class name.

Pure functions of what studio.runs.run_detail and studio.pictures.evaluation answer for each run, so each is tested
without a server. Runs of different tasks (a classifier and a detector) are compared where they can be and the
rest is said: their losses and scores are not the same quantity, so each task gets its own charts.
"""

from __future__ import annotations

from typing import Any

MAX_RUNS = 8  # runs compared at once: more colours than this are not told apart on one chart

# Per task: the metrics.csv columns drawn as the loss and the score, and the score's name on the chart.
CURVES = {
    "classification": (("train_loss", "val_loss"), ("train_acc", "val_acc"), "accuracy"),
    "detection": (("train_loss", "val_loss"), ("val_map50",), "validation mAP@0.5"),
}
LOSSES = {"classification": "cross-entropy", "detection": "detection loss (boxes, objectness, classes)"}


class CompareRefused(ValueError):
    """A list of runs that cannot be compared (fewer than 2, more than MAX_RUNS, a run twice). str(): one line."""


def run_names(text: str | None) -> list[str]:
    """The run names of `runs=a,b,c` in their order. Raises CompareRefused for fewer than 2, more than MAX_RUNS or a
    name given twice."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    if len(names) < 2 or len(names) > MAX_RUNS:
        raise CompareRefused(
            f"runs must name 2 to {MAX_RUNS} runs, separated by commas (runs=a,b). Received: {len(names)}"
        )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise CompareRefused(f"runs names each run once. Received twice: {', '.join(twice)[:120]}")
    return names


def curves(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per task among the runs (in the runs' order): its runs, the rows of their metrics merged by epoch
    ({"epoch": e, "RUN:val_loss": v, ...}; a run without that epoch has no key), the keys drawn as loss and score
    (without the run), and the score's name."""
    tasks: dict[str, list[dict[str, Any]]] = {}
    for detail in details:
        tasks.setdefault(detail["task"], []).append(detail)
    merged = []
    for task, runs in tasks.items():
        loss, score, score_name = CURVES.get(task, (("train_loss", "val_loss"), (), "score"))
        rows: dict[int, dict[str, Any]] = {}
        for detail in runs:
            for row in detail["metrics"]:
                if row.get("epoch") is None:
                    continue
                epoch = int(row["epoch"])
                into = rows.setdefault(epoch, {"epoch": epoch})
                for key in (*loss, *score):
                    if row.get(key) is not None:
                        into[f"{detail['name']}:{key}"] = row[key]
        merged.append(
            {
                "task": task,
                "runs": [d["name"] for d in runs],
                "rows": [rows[e] for e in sorted(rows)],
                "loss": list(loss),
                "loss_name": LOSSES.get(task, "loss"),
                "score": list(score),
                "score_name": score_name,
            }
        )
    return merged


def _chosen(key: str, resolved: str | None = None):
    """A setting as given, or 'auto (what it became)' when convscope chose it (runs.resolved)."""

    def read(detail: dict[str, Any]) -> Any:
        given = detail["config"].get(key)
        became = detail.get("resolved", {}).get(resolved or key)
        if given not in (None, "auto") or became is None:
            return given if given is not None else "auto"
        return f"auto ({became:g})" if isinstance(became, float) else f"auto ({became})"

    return read


# The settings table: (row's name, what it reads from a run's detail). Values are compared as they are shown.
SETTINGS = (
    ("task", lambda d: d["task"]),
    ("model", lambda d: d["model"]),
    ("data", lambda d: d["data"]),
    ("classes", lambda d: f"{d['classes']}: {', '.join(d['class_names'])}"[:200]),
    ("input H×W×C", lambda d: d["input"]),
    ("parameters", lambda d: f"{d['params']:,}"),
    ("epochs done / planned", lambda d: f"{d['epochs']} / {d['planned_epochs']}"),
    ("images per class", lambda d: d["config"].get("per_class") or "all"),
    ("batch size", lambda d: d["config"].get("batch_size")),
    ("learning rate", _chosen("lr")),
    ("optimizer", lambda d: d["config"].get("optimizer")),
    ("schedule", lambda d: d["config"].get("schedule")),
    ("weight decay", lambda d: d["config"].get("weight_decay")),
    ("label smoothing", lambda d: d["config"].get("label_smoothing")),
    ("augmentation", _chosen("augment")),
    ("image size", lambda d: d["config"].get("image_size") or "the model's"),
    ("fine-tuning epochs", lambda d: d["config"].get("finetune_epochs")),
    ("precision", _chosen("precision")),
    ("threads", _chosen("threads")),
    ("device", lambda d: d["config"].get("device")),
    ("seed", lambda d: d["config"].get("seed")),
    ("status", lambda d: d["status"]),
    ("test score", lambda d: None if d["score"] is None else f"{d['score_name']} {_score(d)}"),
    ("training seconds", lambda d: _rounded(d["results"].get("train_seconds"))),
)


def _score(detail: dict[str, Any]) -> str:
    score = detail["score"]
    return f"{100 * score:.1f}%" if detail["task"] == "classification" else f"{score:.3f}"


def _rounded(value: Any) -> Any:
    return round(value, 1) if isinstance(value, float) else value


def settings(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The settings side by side: [{"setting", "values" (one per run, in order), "differs"}]."""
    rows = []
    for name, read in SETTINGS:
        values = [read(detail) for detail in details]
        rows.append({"setting": name, "values": values, "differs": any(v != values[0] for v in values[1:])})
    return rows


def per_class(names: list[str], evaluations: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' per-class numbers in one table, classes aligned by name (in the order they first appear):
    {"metrics": the numbers any run has (precision, recall, f1, support; ap50 for detectors), "rows": [{"class",
    "values": {run: {metric: number} or None when the run has no such class}}], "notes": what is missing or differs}."""
    metrics: list[str] = []
    rows: dict[str, dict[str, Any]] = {}
    notes = []
    for name, evaluation in zip(names, evaluations, strict=True):
        if not evaluation["per_class"]:
            notes.append(f"{name}: {evaluation.get('note') or 'no per-class numbers saved'}")
        for entry in evaluation["per_class"]:
            values = {k: v for k, v in entry.items() if k != "class"}
            metrics += [k for k in values if k not in metrics]
            rows.setdefault(entry["class"], {"class": entry["class"], "values": dict.fromkeys(names)})
            rows[entry["class"]]["values"][name] = values
    having = [name for name, evaluation in zip(names, evaluations, strict=True) if evaluation["per_class"]]
    for name in having:  # classes differ: which of the table's classes each run has not (said once per run)
        missing = [row["class"] for row in rows.values() if row["values"][name] is None]
        if missing:
            notes.append(f"{name} has no class {', '.join(missing)}"[:300])
    kinds = {bool(evaluation.get("detector")) for evaluation in evaluations}
    if len(kinds) > 1:
        notes.append("classifiers give precision, recall and F1 per class, detectors AP@0.5: not the same number")
    return {"metrics": metrics, "rows": list(rows.values()), "notes": notes}


def notes(details: list[dict[str, Any]]) -> list[str]:
    """What is not comparable among the runs, in words (nothing when they are all of one task)."""
    tasks = {detail["task"] for detail in details}
    if len(tasks) < 2:
        return []
    which = "; ".join(f"{', '.join(d['name'] for d in details if d['task'] == task)}: {task}" for task in sorted(tasks))
    return [
        f"these runs are of different tasks ({which}): their losses and scores are different quantities, so each "
        "task has its own charts; class maps are drawn for classifiers only, a detector shows its boxes"
    ]
