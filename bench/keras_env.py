"""The Keras/TensorFlow side of the benchmarks: its own venv (bench/.venv-keras), created only when asked.

TensorFlow is not a convscope dependency, so it lives in a separate venv made with the same Python as the project's;
Keras code runs there in a subprocess (bench/keras_worker.py: JSON arguments in, one JSON line out).

    .venv/bin/python bench/keras_env.py          # create (or check) the venv and print what is in it
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-keras"
READY = VENV / "convscope-bench.json"  # written after a successful install: versions, install time and size
WORKER = BENCH / "keras_worker.py"
# What pip resolves for Python 3.11 on x86-64 Linux in Nov 2025: tensorflow-cpu 2.21.0 (Keras 3). Keras 3 (TF >= 2.16)
# is what the tutorials of today run; the upper bound keeps a later major change from sneaking in.
REQUIREMENT = "tensorflow-cpu>=2.16,<2.22"
INSTALL_TIMEOUT = 3600  # seconds


@dataclass(frozen=True)
class KerasEnv:
    python: Path
    info: dict  # tensorflow / keras versions, install seconds, size


def _python() -> Path:
    return VENV / "bin" / "python"


def _size_mb(folder: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total / 2**20


def _versions(python: Path) -> dict:
    code = (
        "import json, tensorflow as tf, keras, numpy; "
        "print(json.dumps({'tensorflow': tf.__version__, 'keras': keras.__version__, 'numpy': numpy.__version__}))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env, timeout=300)
    if done.returncode:
        raise RuntimeError(f"`import tensorflow` failed in {VENV}: {_tail(done.stderr)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())


def existing() -> KerasEnv | None:
    """The venv made by an earlier install, or None."""
    if READY.is_file() and _python().is_file():
        return KerasEnv(_python(), json.loads(READY.read_text(encoding="utf-8")))
    return None


def ensure(install: bool = True, log=print) -> tuple[KerasEnv | None, str]:
    """(the Keras venv, '') when usable, else (None, why not). Installs TensorFlow when `install` and missing."""
    found = existing()
    if found:
        return found, ""
    if not install:
        return None, f"no Keras venv at {VENV} (run with --keras to create it)"
    log(f"creating {VENV} and installing {REQUIREMENT} (once; reused afterwards)…")
    started = time.perf_counter()
    try:
        if VENV.exists():  # a half-made venv from a failed attempt
            shutil.rmtree(VENV)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, text=True)
        pip = [str(_python()), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", REQUIREMENT]
        done = subprocess.run(pip, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        if done.returncode:
            return None, f"pip install {REQUIREMENT} failed: {_tail(done.stderr or done.stdout)}"
        seconds = time.perf_counter() - started
        info = {
            **_versions(_python()),
            "requirement": REQUIREMENT,
            "python": sys.version.split()[0],
            "install_seconds": round(seconds, 1),
            "venv_size_mb": round(_size_mb(VENV), 1),
        }
    except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as error:
        return None, f"could not set up {VENV}: {error}"
    READY.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log(
        f"installed tensorflow {info['tensorflow']} in {info['install_seconds']:.0f} s ({info['venv_size_mb']:.0f} MiB)"
    )
    return KerasEnv(_python(), info), ""


def run_worker(env: KerasEnv, args: dict, timeout: float) -> dict:
    """Run keras_worker.py with `args` in the Keras venv; its JSON result (RuntimeError with stderr when it fails)."""
    # TF_ENABLE_ONEDNN_OPTS is left as TensorFlow's default (on for x86 CPUs); only TF's info chatter is silenced.
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "1"}
    done = subprocess.run(
        [str(env.python), str(WORKER), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        raise RuntimeError(f"keras worker failed (exit {done.returncode}): {_tail(done.stderr, 8)}")
    return json.loads(lines[-1])


if __name__ == "__main__":
    keras, why = ensure(install=True)
    print(json.dumps(keras.info if keras else {"error": why}, indent=2))
    sys.exit(0 if keras else 1)
