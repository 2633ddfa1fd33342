"""The layers of docs/ARCHITECTURE.md, checked on the source: every import of an
`anchor_service` module (lazy ones inside functions included) goes down the stack

    cli, jobs -> recipe -> pipeline, training, serve, report -> scoring -> engines, data,
    cluster, compute, experiment_dir -> config, rundir, schema, evaluation -> core

or stays inside its own group; nothing imports upward or sideways. The demo package sits in
two layers: its generator (`demo.task`) with `data`, the rest with `scoring`. Also: no import
cycle between modules, and no function longer than 80 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80

# (module prefix, group, rank); the longest matching prefix wins.
LAYERS: tuple[tuple[str, str, int], ...] = (
    ("anchor_service", "root", 0),
    ("anchor_service.core", "core", 0),
    ("anchor_service.config", "config", 1),
    ("anchor_service.rundir", "rundir", 1),
    ("anchor_service.schema", "schema", 1),
    ("anchor_service.faults", "faults", 1),
    ("anchor_service.evaluation", "evaluation", 1),
    ("anchor_service.engines", "engines", 2),
    ("anchor_service.data", "data", 2),
    ("anchor_service.demo.task", "data", 2),
    ("anchor_service.cluster", "cluster", 2),
    ("anchor_service.compute", "compute", 2),
    ("anchor_service.experiment_dir", "experiment_dir", 2),
    ("anchor_service.scoring", "scoring", 3),
    ("anchor_service.demo", "scoring", 3),
    ("anchor_service.pipeline", "pipeline", 4),
    ("anchor_service.training", "training", 4),
    ("anchor_service.serve", "serve", 4),
    ("anchor_service.report", "report", 4),
    ("anchor_service.recipe", "recipe", 5),
    ("anchor_service.cli", "cli", 6),
    ("anchor_service.resources", "root", 0),
    ("jobs", "jobs", 6),
)


def layer(module: str) -> tuple[str, int]:
    best = max(
        (p for p in LAYERS if module == p[0] or module.startswith(p[0] + ".")),
        key=lambda p: len(p[0]),
        default=None,
    )
    assert best is not None, f"{module}: in no layer of tests/test_import_layers.py"
    return best[1], best[2]


def modules() -> dict[str, Path]:
    out = {}
    for top in ("anchor_service", "jobs"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports(path: Path) -> set[str]:
    """The project modules a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {m for m in found if m.split(".")[0] in ("anchor_service", "jobs")}


def test_every_import_goes_down_the_layers_or_stays_in_its_group():
    wrong = []
    for name, path in modules().items():
        group, rank = layer(name)
        for target in sorted(imports(path)):
            t_group, t_rank = layer(target)
            if t_group != group and t_rank >= rank:
                wrong.append(f"{name} ({group}, {rank}) imports {target} ({t_group}, {t_rank})")
    assert not wrong, "imports against docs/ARCHITECTURE.md's layers:\n" + "\n".join(wrong)


def test_no_import_cycle_between_modules():
    mods = modules()
    graph = {
        name: {t for t in imports(path) if t in mods and t != name} for name, path in mods.items()
    }
    # A package's __init__ importing its own modules is how packages export: not a cycle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_function_over_80_lines():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)
