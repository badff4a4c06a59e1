"""The README's Python names stay what it says (functions, a class) after any import order.

convscope.build, .evaluate and .predict used to be submodules too; importing one replaced the function on the
package with the module ('module' object is not callable the second time). Each order runs in a fresh interpreter,
since an import, once done, cannot be undone in this one.
"""

import subprocess
import sys

import pytest

NAMES = (
    "build",
    "evaluate",
    "predict",
    "train",
    "load_run",
    "load_model",
    "TrainConfig",
    "write_report",
    "infer",
    "doctor",
)
CHECK = f"""
import inspect
import convscope
for name in {NAMES!r}:
    first, second = getattr(convscope, name), getattr(convscope, name)
    assert first is second, name
    assert inspect.isfunction(first) or inspect.isclass(first), (name, first)
from convscope import build, evaluate, predict
assert all(inspect.isfunction(f) for f in (build, evaluate, predict))
model = convscope.build(convscope.NetSpec("8x8x1", [convscope.Conv(2, 3), convscope.Flatten(), convscope.Dense(2)]))
model = convscope.build(convscope.NetSpec("8x8x1", [convscope.Conv(2, 3), convscope.Flatten(), convscope.Dense(2)]))
print(type(model).__name__, sorted(n for n, _ in model.named_children()))
"""


@pytest.mark.parametrize(
    "before",
    [
        "",  # the names first
        "import convscope.builder, convscope.classify.evaluate, convscope.classify.predict",  # the modules first
        "from convscope.classify.predict import prepare\n"
        "from convscope.classify.evaluate import evaluation_from_logits",
        "import convscope.cli_train, convscope.inspect.gradcam, convscope.export",  # modules that import them
        "import convscope\nconvscope.predict\nimport convscope.classify.predict",  # the name, then its module
    ],
)
def test_public_names_survive_every_import_order(before):
    code = f"{before}\n{CHECK}\n{CHECK}"  # the whole check twice: the second look-up is what used to fail
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ConvNet ['conv1', 'dense1', 'flatten1']"] * 2


def test_no_public_name_is_also_a_submodule():
    """What made the bug possible: a lazy name that is also the name of a module of the package."""
    import importlib.util

    import convscope

    clashes = [name for name in convscope._LAZY if importlib.util.find_spec(f"convscope.{name}") is not None]
    assert clashes == []
