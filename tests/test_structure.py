"""The house runs one way: cli.py above pipeline/ (data side) above guppy/ (model side), and inside guppy/
one subpackage per thing a user does, each importing only the rooms below it (docs/architecture.md).
The model side never imports the data side, so the trainer, evaluator and exporter work on any saved
dataset; the core imports no torch, so `guppy --help` starts fast."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = "core"  # guppy/*.py: errors, checks, config, presets
# Which rooms each room may import (besides itself). Function-local imports count: a cycle hidden in a
# function is still a cycle a reader has to untangle.
MAY_IMPORT = {
    CORE: set(),
    "store": {CORE},
    "spec": {CORE, "store"},
    "data": {CORE, "spec"},
    "model": {CORE, "store", "spec"},
    "train": {CORE, "store", "spec", "data", "model"},
    "eval": {CORE, "store", "spec", "data", "model"},
    "export": {CORE, "store", "spec", "data", "model", "eval"},
}
TORCH_FREE = [CORE, "store", "spec"]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in MAY_IMPORT) else CORE


def runtime_imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function; not those under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from guppy.eval import report`
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """guppy module -> the guppy modules it imports."""
    modules = {module_name(p, root): p for p in (root / "guppy").rglob("*.py")}
    return {name: {m for m in runtime_imports(path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for module, imported in graph.items():
        rooms.setdefault(room(module), set()).update(room(m) for m in imported if room(m) != room(module))
    return rooms


def test_every_room_is_in_the_table_and_says_what_it_owns():
    rooms = {p.parent.name for p in (ROOT / "guppy").glob("*/__init__.py")}
    assert rooms == set(MAY_IMPORT) - {CORE}
    for name in rooms:
        assert len(ast.get_docstring(ast.parse((ROOT / "guppy" / name / "__init__.py").read_text())) or "") > 40, name


def test_no_module_imports_itself_round_a_cycle():
    assert find_cycle(import_graph()) is None


def test_rooms_import_only_the_rooms_below_them():
    graph = import_graph()
    wrong = [f"{module} -> {m}" for module, imported in sorted(graph.items()) for m in sorted(imported)
             if room(m) != room(module) and room(m) not in MAY_IMPORT[room(module)]]
    assert wrong == [], "imports against docs/architecture.md's table: " + ", ".join(wrong)
    assert find_cycle(room_graph(graph)) is None
    assert find_cycle({k: set(v) for k, v in MAY_IMPORT.items()}) is None  # the table itself is one way


def test_the_rules_catch_a_cycle(tmp_path):
    """The rules are not vacuous: a copy of guppy/ with one import added against the grain fails both."""
    import shutil

    shutil.copytree(ROOT / "guppy", tmp_path / "guppy", ignore=shutil.ignore_patterns("playground", "__pycache__"))
    (tmp_path / "guppy" / "model" / "gpt.py").open("a").write("\nfrom guppy.train.trainer import train  # noqa\n")
    graph = import_graph(tmp_path)
    assert find_cycle(room_graph(graph)) == ["model", "train", "model"]
    assert "train" not in MAY_IMPORT["model"] and "guppy.train.trainer" in graph["guppy.model.gpt"]


def test_the_model_side_never_imports_the_data_side():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "guppy").rglob("*.py")
                 if any(m == "pipeline" or m.startswith("pipeline.") for m in runtime_imports(p))]
    assert offenders == [], f"guppy/ imports pipeline/ in {offenders}"


def test_the_core_and_the_help_import_no_torch():
    """Import every torch-free room and cli.py in a fresh interpreter, then look at sys.modules."""
    modules = [module_name(p) for p in sorted((ROOT / "guppy").rglob("*.py")) if room(module_name(p)) in TORCH_FREE]
    code = (f"import importlib, sys\nfor m in {modules + ['cli']!r}:\n    importlib.import_module(m)\n"
            "heavy = sorted(m for m in ('torch', 'datasets', 'transformers', 'matplotlib') if m in sys.modules)\n"
            "sys.exit(', '.join(heavy) or None)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"importing {modules} pulled in {done.stderr.strip()}"
    assert "guppy.store.atomic" in modules and "guppy.spec.persona" in modules and "guppy.config" in modules


def test_guppy_does_not_import_transformers():
    """transformers is optional: no guppy module imports it (the export writes plain JSON + safetensors)."""
    code = ("import importlib, pkgutil, sys, cli, guppy, pipeline\n"
            "for pkg in (guppy, pipeline):\n"
            "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
            "        importlib.import_module(m.name)\n"
            "sys.exit('transformers' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_the_suite_collects_with_only_the_test_extra():
    """`pip install .[test]` alone: the tests that need transformers, onnx or selenium skip, saying why,
    rather than abort the collection. The extras are hidden from a fresh interpreter's imports."""
    hide = ("import sys\nclass Hide:\n    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('transformers', 'onnx', 'onnxruntime', 'onnxscript', 'selenium'):\n"
            "            raise ModuleNotFoundError(f'{name} hidden (test)', name=name)\n"
            "sys.meta_path.insert(0, Hide())\nimport pytest\n"
            "sys.exit(pytest.main(['-q', '--co', '-p', 'no:cacheprovider', 'tests']))")
    done = subprocess.run([sys.executable, "-c", hide], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and " error" not in done.stdout.splitlines()[-1], done.stdout[-3000:]


def test_every_preset_is_one_entry_of_one_table():
    from guppy.config import TrainConfig
    from guppy.presets import PRESETS

    for name, entry in PRESETS.items():
        assert set(entry) - {"about"} <= set(TrainConfig.model_fields), name
        TrainConfig(preset=name)  # complete: every field the table must give is there


def test_no_file_over_400_lines():
    files = [*ROOT.glob("*.py"), *(ROOT / "guppy").rglob("*.py"), *(ROOT / "pipeline").rglob("*.py"),
             *(ROOT / "tests").rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_no_function_over_60_lines():
    files = [*ROOT.glob("*.py"), *(ROOT / "guppy").rglob("*.py"), *(ROOT / "pipeline").rglob("*.py")]
    long = {f"{p.relative_to(ROOT)}:{node.name}": node.end_lineno - node.lineno + 1 for p in files
            for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > 60}
    assert long == {}


def test_the_installed_guppy_command_runs_this_checkouts_cli(tmp_path):
    """`pip install -e .` must not leave a copy of cli.py in site-packages: it would shadow the checkout's
    and every later edit of cli.py would be invisible to the `guppy` command."""
    found = subprocess.run([sys.executable, "-c", "import cli; print(cli.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip("the project is not installed here (pip install -e .)")
    assert Path(found.stdout.strip()).resolve() == (ROOT / "cli.py").resolve()
