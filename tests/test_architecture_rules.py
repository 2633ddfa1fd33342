"""The rules of docs/ARCHITECTURE.md that a glance at one file cannot check, held on the source:
the method part of core stays small, torch's threads are set in one place, and the names of
run-directory files are spelled only where the directories are declared."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "anchor_service" / "core"

# The method (METHOD.md steps 0-7 as plain functions): what docs/ARCHITECTURE.md counts.
METHOD_FILES = (
    "prompts.py",
    "parsing.py",
    "categorize.py",
    "pairs.py",
    "rubric.py",
    "keys.py",
)
# Also in core, not the method: plain data and input checks, the injection defence.
NOT_METHOD_FILES = ("__init__.py", "types.py", "injection.py")
METHOD_MAX_LINES = 750


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_every_core_module_is_method_or_named_as_not_method():
    found = {p.name for p in CORE.glob("*.py")}
    unclassified = found - set(METHOD_FILES) - set(NOT_METHOD_FILES)
    assert not unclassified, (
        f"core modules {sorted(unclassified)} are neither in METHOD_FILES nor in "
        "NOT_METHOD_FILES; say which they are (and update docs/ARCHITECTURE.md)"
    )
    assert set(METHOD_FILES) <= found and set(NOT_METHOD_FILES) <= found


def test_the_method_part_of_core_stays_near_700_lines():
    counts = {name: _lines(CORE / name) for name in METHOD_FILES}
    total = sum(counts.values())
    assert total <= METHOD_MAX_LINES, (
        f"the method part of core is {total} lines (over {METHOD_MAX_LINES}): {counts}; move "
        "types, constants and input checks to core/types.py, I/O and statistics out of core"
    )


def test_the_architecture_doc_states_the_method_line_count():
    total = sum(_lines(CORE / name) for name in METHOD_FILES)
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert f"{total} lines" in doc, f"docs/ARCHITECTURE.md should say the method is {total} lines"
    for name in METHOD_FILES:
        assert f"core/{name}" in doc


def _calls(tree: ast.AST, attr: str) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == attr
    ]


def test_torch_threads_are_set_only_by_compute_start_threads():
    where = []
    for path in sorted((ROOT / "anchor_service").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for line in _calls(ast.parse(path.read_text(encoding="utf-8")), "set_num_threads"):
            where.append(f"{rel}:{line}")
    assert where == [w for w in where if w.startswith("anchor_service/compute.py:")]
    assert len(where) == 1, where


# Names that only rundir.py (RunDir) and experiment_dir.py (ExperimentDir) may spell.
RUN_FILE_NAMES = {
    "config.yaml",
    "summary.json",
    "report.md",
    "report.html",
    "figures",
    "experiment.json",
    "experiment.yaml",
    "timings.json",
    "sanity.json",
}
DECLARED_IN = {"anchor_service/rundir.py", "anchor_service/experiment_dir.py"}


def _code_strings(tree: ast.AST) -> list[ast.Constant]:
    """String constants that are not docstrings."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def test_run_directory_paths_are_built_only_by_rundir_and_experiment_dir():
    wrong = []
    for path in sorted((ROOT / "anchor_service").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in DECLARED_IN:
            continue
        for node in _code_strings(ast.parse(path.read_text(encoding="utf-8"))):
            value = node.value
            parquet = value.endswith(".parquet") and value != ".parquet"
            if value in RUN_FILE_NAMES or parquet:
                wrong.append(f"{rel}:{node.lineno}: {value!r}")
    assert not wrong, "run-directory names outside RunDir / ExperimentDir:\n" + "\n".join(wrong)
