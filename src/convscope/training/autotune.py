"""Auto-tuning: the trainer times a few training steps of each way it could run on this machine, under its present
load, and keeps the fastest (threads, and bf16 against float32 where the CPU has bf16 instructions).

Why measure instead of a rule: the winner changes with the network and the machine. On a 2-core AMD EPYC (AVX2) a
32×32 cifar-3conv trained at 2,900 images/s on 2 threads and 1,500 on 1 while the machine was quiet, and at 870 on 2
threads and 1,680 on 1 beside one busy program (bench/train_throughput.py); a 224×224 network gains from every core;
bf16 is 2.4× float32 on AMX, 1.3× on AVX512-BF16 and emulated (slower) elsewhere.

A trial runs on a copy of the model and optimizer, on a real batch, with torch's random generators set back after
it: the run's own weights, optimizer state and random draws are untouched, so a tuned run trains the same numbers as
the same choice forced. The choice is part of the run (config.yaml and the checkpoint): a resumed run continues with
the choice its checkpoint was made with, and re-measures only when a new phase begins.

The thread count changes the order in which floating-point sums are added (oneDNN splits them between threads), so
two thread counts agree to about 1e-7 per step, not bit for bit; precision and the thread count are therefore never
changed silently: every choice and re-check is logged with its measured figures.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from convscope.errors import CheckpointError

# A trial: warm-up steps (oneDNN builds its kernels in the first one), then timed steps until TRIAL_SECONDS have
# passed (at least MIN_TIMED steps, at most MAX_TIMED): its images/s is batch ÷ the median timed step.
WARMUP_STEPS, MIN_TIMED, MAX_TIMED, TRIAL_SECONDS = 2, 3, 12, 0.4
# Tuning is worth it only when it costs little of the phase: the trial steps of every candidate at most this share of
# the phase's steps (a short run, a test, keeps the defaults: all of its cores, float32).
MAX_TUNING_SHARE = 0.05
# Busy machine: a re-check when the steps of the last WINDOW_SECONDS (at least RECHECK_WINDOW steps) run at a median
# speed below DROP × that of the first such window after the choice (another program started); and, while running on
# fewer threads than the cores, every RECHECK_SECONDS (the other program may have ended, which a one-thread run cannot
# see). Never sooner than 1 / MAX_TUNING_SHARE times what the last measurement took after it: a machine whose speed
# merely jitters costs at most that share in re-checks.
RECHECK_WINDOW, WINDOW_SECONDS, DROP, RECHECK_SECONDS = 8, 2.0, 2 / 3, 120.0


@dataclass(frozen=True)
class Choice:
    """One way to run a training step: `threads` torch CPU threads, the forward pass in `precision` (fp32 or bf16)."""

    threads: int
    precision: str

    def label(self) -> str:
        return f"{self.threads} thread{'s' if self.threads != 1 else ''}, {self.precision}"


@dataclass
class Tuning:
    """A choice and how it was made: `how` is measured, forced or default; `measured` maps each candidate's label to
    its images/s (empty unless measured); `notes` says what was not tried and why; `seconds` is what tuning cost."""

    choice: Choice
    how: str
    measured: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def speed(self) -> float | None:
        """The chosen candidate's images/s (None when not measured)."""
        return self.measured.get(self.choice.label())

    def line(self) -> str:
        """'tuned: 2 threads, fp32 (2,916 images/s; 1 thread, fp32: 1,515) in 0.4 s', or how it was set."""
        if self.how != "measured":
            return f"threads and precision: {self.choice.label()} ({'; '.join(self.notes) or self.how})"
        others = [f"{label}: {speed:,.0f}" for label, speed in self.measured.items() if label != self.choice.label()]
        figures = f"{self.speed:,.0f} images/s" + (f"; {'; '.join(others)}" if others else "")
        notes = f"; {'; '.join(self.notes)}" if self.notes else ""
        return f"tuned: {self.choice.label()} ({figures}{notes}) in {self.seconds:.1f} s"

    def to_dict(self) -> dict:
        """For config.yaml and the checkpoint (plain numbers and text)."""
        return {
            **asdict(self.choice),
            "how": self.how,
            "measured": {k: round(v, 1) for k, v in self.measured.items()},
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, saved, where: str, max_threads: int) -> Tuning:
        """The Tuning saved by to_dict. Raises CheckpointError naming `where` when it is not one."""
        ok = (
            isinstance(saved, dict)
            and isinstance(saved.get("threads"), int)
            and 1 <= saved["threads"] <= max_threads
            and saved.get("precision") in ("fp32", "bf16")
            and saved.get("how") in ("measured", "forced", "default")
        )
        if not ok:
            raise CheckpointError(f"{where}: tuning is {str(saved)[:80]}, expected threads and precision")
        measured = saved.get("measured") or {}
        measured = {str(k): float(v) for k, v in measured.items() if isinstance(v, int | float)}
        notes = [str(n) for n in saved.get("notes") or [] if isinstance(n, str)]
        seconds = saved.get("seconds", 0.0)
        seconds = float(seconds) if isinstance(seconds, int | float) else 0.0
        return cls(Choice(saved["threads"], saved["precision"]), saved["how"], measured, notes, seconds)


def thread_counts(cores: int) -> list[int]:
    """The thread counts worth trying on `cores` cores: 1, powers of two below, and all of them ([1, 2] for 2)."""
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return [*counts, cores]


def candidates(threads: int | None, precision: str, cores: int, bf16_native: bool) -> tuple[list[Choice], list[str]]:
    """The choices to time, and notes on what is not tried. `threads` None and `precision` auto are tuned; a number
    or fp32/bf16 is forced. bf16 is tried only on CPUs with bf16 instructions (elsewhere oneDNN emulates it, slower)."""
    counts = [threads] if threads else thread_counts(cores)
    notes = []
    if precision == "auto":
        precisions = ["fp32", "bf16"] if bf16_native else ["fp32"]
        if not bf16_native:
            notes.append("bf16 not tried: no bf16 instructions")
    else:
        precisions = [precision]
    return [Choice(t, p) for p in precisions for t in counts], notes


def time_steps(step: Callable[[], None], batch: int) -> float:
    """images/s of `step` (one training step of `batch` images): WARMUP_STEPS untimed, then the median of the timed."""
    for _ in range(WARMUP_STEPS):
        step()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < MIN_TIMED or (len(times) < MAX_TIMED and time.perf_counter() - started < TRIAL_SECONDS):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def tune(trial: Callable[[Choice], float], choices: list[Choice], notes: list[str]) -> Tuning:
    """Time each of `choices` with `trial` (its images/s) and keep the fastest; ties go to the earlier choice."""
    started = time.perf_counter()
    measured = {choice.label(): trial(choice) for choice in choices}
    best = max(choices, key=lambda c: measured[c.label()])
    return Tuning(best, "measured", measured, notes, time.perf_counter() - started)


def steps_to_tune(choices: int) -> int:
    """The fewest steps a phase needs for timing `choices` candidates to cost at most MAX_TUNING_SHARE of it (a trial
    takes one step for the batch's size, the warm-up and MIN_TIMED timed steps; more only while they are quick)."""
    return math.ceil(choices * (1 + WARMUP_STEPS + MIN_TIMED) / MAX_TUNING_SHARE)


def worth_tuning(choices: int, steps: int) -> bool:
    """Whether a phase of `steps` training steps is long enough to time `choices` (> 1) candidates."""
    return choices > 1 and steps >= steps_to_tune(choices)


def cores_for(processes: int) -> int:
    """This process's share of the machine's cores (several processes per machine under torchrun)."""
    return max(1, (os.cpu_count() or 1) // processes)


class Watch:
    """Watches the training steps' speed for a drop (another program started) or a long time on few threads.

    `step(images, seconds)` after each step: True when a re-check is due. The yardstick is the median speed of the
    first window of steps after a choice (the real steps, data and augmentation included); `now` is the median of the
    last window. `cost`: seconds the choice's measurement took; `period`: seconds between re-checks while on fewer
    threads than `all_threads`."""

    def __init__(self, all_threads: int, threads: int, cost: float = 0.0, period: float = RECHECK_SECONDS) -> None:
        self.all_threads, self.threads, self.period = all_threads, threads, period
        self.gap = cost / MAX_TUNING_SHARE  # the least time between a measurement and the next
        self.reference: float | None = None
        self.now = 0.0
        self.recent: deque[tuple[int, float]] = deque()  # (images, seconds) of the last steps: the window
        self.seconds = 0.0  # the window's seconds, kept as steps come and go (this runs after every step)
        self.since = time.perf_counter()

    def step(self, images: int, seconds: float) -> bool:
        if seconds <= 0:
            return False
        self.recent.append((images, seconds))
        self.seconds += seconds
        while len(self.recent) > RECHECK_WINDOW and self.seconds - self.recent[0][1] >= WINDOW_SECONDS:
            self.seconds -= self.recent.popleft()[1]
        if len(self.recent) < RECHECK_WINDOW or self.seconds < WINDOW_SECONDS:
            return False
        self.now = statistics.median(n / s for n, s in self.recent)
        if self.reference is None:
            self.reference = self.now
            return False
        waited = time.perf_counter() - self.since
        if waited < self.gap:
            return False
        return self.now < DROP * self.reference or (self.threads < self.all_threads and waited > self.period)
