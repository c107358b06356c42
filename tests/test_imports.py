"""What a command imports (issue 16: start-up). Not a timing test: it checks module lists.

``ipusim --help`` builds the parser only; ``simulator.run`` (the run path of ``ipusim run`` and
of the Python API) loads the engine, not the viewers, the sweep machinery or the table
libraries; running a communication scenario imports only the ``comm`` strategy. Each check
runs in a fresh interpreter, so nothing imported by the test run itself can hide a regression.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: never needed to run a scenario: viewers, tables, sweeps, graph library, data sets
NOT_FOR_RUN = (
    "networkx",
    "pandas",
    "pyarrow",
    "plotly",
    "dask",
    "distributed",
    "tqdm",
    "sklearn",
    "scipy",
    "matplotlib",
    "sqlite3",
    "multiprocessing",
    "simulator.viz.page",
    "simulator.viz.timeline",
    "simulator.viz.report",
    "simulator.sweep.driver",
    "simulator.sweep.runners",
    "simulator.sweep.store",
    "simulator.sweep.export",
    "simulator.export.chrome_trace",
    "simulator.capacity",
)

#: the parser alone: no schemas, no arrays, no YAML, no engine
NOT_FOR_HELP = (
    *NOT_FOR_RUN,
    "numpy",
    "pydantic",
    "yaml",
    "simpy",
    "simulator.config.scenario",
    "simulator.engine",
    "simulator.hardware",
    "simulator.sweep.spec",
    "simulator.sweep.points",
)


def _modules(code: str) -> set[str]:
    """Modules loaded in a fresh interpreter after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))


def test_help_builds_the_parser_without_the_heavy_modules() -> None:
    modules = _modules("from simulator.cli import build_parser\nbuild_parser()")
    assert "simulator.cli" in modules
    assert _loaded(modules, NOT_FOR_HELP) == []


def test_simulator_run_imports_only_what_a_run_needs() -> None:
    modules = _modules("import simulator.run")
    assert {"simulator.engine.executor", "numpy", "simpy"} <= modules
    assert _loaded(modules, NOT_FOR_RUN) == []
    assert _loaded(modules, ("strategies",)) == []  # looked up by name when a run needs one


def test_a_comm_run_loads_only_the_comm_strategy() -> None:
    scenario = ROOT / "scenarios/microbench/all-reduce-64MiB-pod16.yaml"
    modules = _modules(f"from simulator.run import run_scenario\nrun_scenario({str(scenario)!r})")
    assert _loaded(modules, NOT_FOR_RUN) == []
    assert _loaded(modules, ("strategies",)) == ["strategies", "strategies.comm"]


def test_declared_strategy_modules_match_what_registers() -> None:
    """Every strategy type is declared with the module that registers it (a module that
    registers an undeclared type would only be found after something imported it). Every
    module is imported, those inside strategy packages (``strategies.moe.strategy``) too."""
    code = (
        "import importlib, pkgutil, strategies\n"
        "from simulator import strategy\n"
        "for m in pkgutil.walk_packages(strategies.__path__, 'strategies.'):\n"
        "    importlib.import_module(m.name)\n"
        "import json\n"
        "owner = {n: type(s).__module__ for n, s in strategy._REGISTRY.items()}\n"
        "print(json.dumps([owner, strategies.STRATEGY_MODULES]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    registered, declared = json.loads(out.splitlines()[-1])
    assert registered == declared


def _imports(path: Path) -> set[str]:
    """Absolute module names a source file imports (anywhere in it, lazy imports included)."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_reference_runs_never_import_the_simulator() -> None:
    """The NumPy reference runs (``strategies/reference/``, and each strategy package's
    ``reference*.py`` beside its plan, e.g. ``strategies/moe/reference.py``) count their work
    themselves: neither they nor any ``strategies`` module they import, followed through, may
    import ``simulator``, or a plan's code could leak into the counts they are checked with."""
    todo = [
        *sorted((ROOT / "strategies" / "reference").glob("*.py")),
        *sorted((ROOT / "strategies").glob("*/reference*.py")),
    ]
    assert ROOT / "strategies" / "moe" / "reference.py" in todo
    seen: set[Path] = set()
    bad: list[str] = []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in sorted(_imports(path)):
            if name == "simulator" or name.startswith("simulator."):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
            elif name.startswith("strategies."):
                module = ROOT.joinpath(*name.split("."))
                if module.with_suffix(".py").is_file():
                    todo.append(module.with_suffix(".py"))
    assert ROOT / "strategies" / "moe" / "gating.py" in seen
    assert bad == []
