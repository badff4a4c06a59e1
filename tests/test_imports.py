"""convscope's modules import each other in layers: no import cycles, and the ground floor imports nothing above it.

The graph is read from the source with `ast`, not by importing: imports inside functions count too (a lazy import
still ties the two modules together, it only postpones the failure to the first call that needs it).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "convscope"


def module_files(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package under `src`, by dotted name ('convscope.spec'; a package's __init__.py is
    the package's own name)."""
    files = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def _imported_names(module: str, path: Path) -> list[str]:
    """The dotted names every `import` and `from … import` of the file names, relative ones made absolute. For
    `from a.b import c` both 'a.b' and 'a.b.c' (c may be a submodule or a name in a.b)."""
    # The package a relative import starts from: the module's own package, or the package itself for an __init__.py.
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return names


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package's modules it imports. An imported name counts as its longest prefix that is a module
    ('convscope.spec.Conv' -> 'convscope.spec'); the module's own packages are left out ('convscope' itself, and
    'convscope.data' for convscope.data.idx), since importing a module always runs its packages first anyway."""
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for name in _imported_names(module, path):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles a depth-first walk meets (every back edge closes one), each as [a, b, ..., a], starting at its
    alphabetically first module so a cycle reads the same on every run."""
    state: dict[str, str] = {}  # 'open' while on the walk's path, 'done' once all it reaches is walked
    path: list[str] = []
    found: set[tuple[str, ...]] = set()

    def walk(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycle = path[path.index(target) :]
                first = cycle.index(min(cycle))
                found.add(tuple(cycle[first:] + cycle[:first]))
            elif target not in state:
                walk(target)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module)
    return [[*cycle, cycle[0]] for cycle in sorted(found)]


def test_no_import_cycles():
    cycles = find_cycles(import_graph(module_files()))
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_ground_floor_imports_nothing_above_it():
    graph = import_graph(module_files())
    assert graph["convscope.errors"] == set()
    assert graph["convscope.files"] <= {"convscope.errors"}
    assert graph["convscope.weights"] <= {"convscope.errors", "convscope.files"}


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    """The walk itself: what it must count, and what it must leave out."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.low import thing\n")
    (pkg / "low.py").write_text("thing = 1\n")
    (pkg / "high.py").write_text("def later():\n    from pkg.sub.mod import name\n")
    (pkg / "sub" / "__init__.py").write_text("from . import mod\n")
    (pkg / "sub" / "mod.py").write_text("import pkg\nfrom .. import low\nfrom ..high import later\nname = 2\n")
    graph = import_graph(module_files(tmp_path, "pkg"))
    assert graph == {
        "pkg": {"pkg.low"},
        "pkg.high": {"pkg.sub.mod"},  # inside a function, and pkg.sub.mod.name is a name in pkg.sub.mod
        "pkg.low": set(),
        "pkg.sub": {"pkg.sub.mod"},  # `from . import mod` in a package's __init__.py: its own submodule
        "pkg.sub.mod": {"pkg.low", "pkg.high"},  # `import pkg`: its own package, left out
    }
    assert find_cycles(graph) == [["pkg.high", "pkg.sub.mod", "pkg.high"]]


# The floors of the house, top to bottom (ARCHITECTURE.md draws them). A module may import its own floor and those
# below it, never one above: the task folders are reached only from tasks/ and the front doors, and the library's
# lower floors know nothing of the tasks, the training loop or the screens built on them. A module belongs to the
# first floor with a pattern that is its name or a package above it.
FLOORS: list[tuple[str, ...]] = [
    (  # the front doors: they parse, call the library and show
        "convscope",
        "convscope.__main__",
        "convscope.demo",
        "convscope.cli",
        "convscope.cli_args",
        "convscope.cli_detect",
        "convscope.cli_doctor",
        "convscope.cli_export",
        "convscope.cli_inspect",
        "convscope.cli_serve",
        "convscope.cli_train",
        "convscope.progress",
        "convscope.studio",
        "convscope.api",
    ),
    ("convscope.export",),  # a run as an ONNX / TorchScript file
    ("convscope.diagnosis",),  # the dataset doctor: a data set's files, twins, properties, balance and labels
    ("convscope.tasks",),  # which task a network is (the one place), and training started or resumed with it
    ("convscope.classify", "convscope.detect"),  # each task's whole life: task, evaluate, predict, report
    ("convscope.training", "convscope.inspect", "convscope.explain_plot"),  # the trainer; looking inside a network
    ("convscope.loaded",),  # one run loaded for inference: model, preprocessing, classes
    (  # a run folder and what it is made of: settings, data, a built network
        "convscope.run",
        "convscope.run_lock",  # the one writer of a run folder
        "convscope.config",
        "convscope.preprocess",
        "convscope.presets",
        "convscope.recipes",
        "convscope.data",
        "convscope.builder",
        "convscope.fused",  # an inference copy of a built network, batchnorms folded into convs
        "convscope.memory",
        "convscope.plots",
        "convscope.explain",
        "convscope.keras_names",
        "convscope.sequential",
        "convscope.onnx_model",
    ),
    ("convscope.pretrained", "convscope.layers", "convscope.reference"),  # torch layers and pretrained bases
    (  # the spec and its arithmetic: pure Python, no torch (the base catalog is the bases' layers as data)
        "convscope.spec",
        "convscope.spec_layers",
        "convscope.spec_bounds",
        "convscope.shapes",
        "convscope.summary",
        "convscope.yamlfile",
        "convscope.weights",
        "convscope.pretrained.catalog",
    ),
    (  # the ground
        "convscope.errors",
        "convscope.files",
        "convscope.out_paths",
        "convscope.show",
        "convscope.device",
        "convscope.signals",
        "convscope.userfiles",
    ),
]


def floor_of(module: str) -> int:
    """The index in FLOORS (0 = top) of a module's floor: that of the longest name in FLOORS that is the module or a
    package above it ('convscope.pretrained.catalog' before 'convscope.pretrained'). A KeyError names a module that
    no floor holds."""
    matches = [
        (len(name), index)
        for index, floor in enumerate(FLOORS)
        for name in floor
        if module == name or (module.startswith(name + ".") and name != "convscope")
    ]
    if not matches:
        raise KeyError(f"{module} is on no floor: add it to FLOORS in tests/test_imports.py")
    return max(matches)[1]


def arrows_up(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every import that climbs to a higher floor than its own module's."""
    return sorted((a, b) for a, targets in graph.items() for b in targets if floor_of(b) < floor_of(a))


def test_every_arrow_points_down():
    up = arrows_up(import_graph(module_files()))
    assert not up, f"{len(up)} import(s) climb a floor:\n" + "\n".join(f"{a} -> {b}" for a, b in up)
