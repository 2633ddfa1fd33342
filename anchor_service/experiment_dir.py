"""The experiment directory: one config x variants x seeds, each seed a run directory.

The contract, as rundir.py is the run directory's (the pipeline writes it, the report
reads it, so it sits below both):
```
DIR/experiment.yaml        what was asked: config, seeds, overrides, variants
DIR/seed-<s>/              a run directory (no variants), run_seed = s
DIR/<variant>/seed-<s>/    a run directory per variant and seed (with variants)
DIR/experiment.json, report.md, report.html, figures/   the aggregate (report/experiment.py)
```
Every run of an experiment has the same config except `run_seed` (and its variant's
overrides); the data subset is pinned (`data.selection_seed` = the config's, else its
run_seed), so seeds differ only in the method's own randomness (sampling, debate retries,
`rank`'s draw, LoRA init, data order), not in which questions they see.

A variant is `NAME:key=value[,key=value...]`, e.g. `oracle:judge.mode=oracle`; its
overrides apply after the experiment's own. A comma starts a new override only when what
follows looks like `key=`, so list values stay whole (`pairs.strategies=[anchor,rank]`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from anchor_service.config import ConfigError, RunConfig, load_config
from anchor_service.rundir import (
    CONFIG_FILE,
    FIGURES,
    REPORT_HTML,
    REPORT_MD,
    ReportDir,
    RunDir,
)

SPEC_FILE = "experiment.yaml"
SUMMARY_FILE = "experiment.json"
SEED_DIR_PREFIX = "seed-"
NO_VARIANT = ""  # the key of the runs of an experiment without variants
# The experiment's own files and folders: a variant may not take their names.
RESERVED_NAMES = {FIGURES, SUMMARY_FILE, SPEC_FILE, REPORT_MD, REPORT_HTML}


class ExperimentDir(ReportDir):
    """Paths of an experiment directory (as RunDir is a run's): the spec, experiment.json
    (`summary`), report.md, report.html, figures/ and each (variant, seed) run."""

    summary_name = SUMMARY_FILE

    @property
    def spec(self) -> Path:
        return self.root / SPEC_FILE

    def run(self, variant: str, seed: int) -> Path:
        """Where the run of (variant, seed) lives."""
        return run_dir(self.root, variant, seed)


_VARIANT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_OVERRIDE_START = re.compile(r",(?=\s*[A-Za-z_][\w.]*\s*=)")


@dataclass(frozen=True)
class Variant:
    """A named set of config overrides; each variant runs every seed."""

    name: str
    overrides: tuple[str, ...] = ()


def parse_variant(text: str) -> Variant:
    """`NAME:key=value[,key=value...]` -> Variant (overrides are validated when loaded)."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or not _VARIANT_NAME.fullmatch(name):
        raise ConfigError(
            f"variant '{text}' must look like NAME:key=value[,key=value], NAME a letter then "
            "letters, digits, '_', '.' or '-' (e.g. oracle:judge.mode=oracle)"
        )
    if name in RESERVED_NAMES or name.startswith(SEED_DIR_PREFIX):
        raise ConfigError(f"variant name '{name}' is taken by the experiment's own files")
    overrides = tuple(p.strip() for p in _OVERRIDE_START.split(rest) if p.strip())
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"variant '{name}': '{item}' is not key=value")
    return Variant(name, overrides)


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` or `0-4` (or both: `0-2,7`) -> distinct seeds in the order given."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ConfigError(f"seeds '{text}': '{part}' is not a seed (0) or a range (0-4)")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise ConfigError(f"seeds '{text}': range '{part}' runs backwards")
        seeds.extend(range(lo, hi + 1))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds '{text}': a seed is repeated; each seed runs once")
    return seeds


@dataclass(frozen=True)
class PlannedRun:
    """One run of an experiment: its variant (NO_VARIANT if none), seed, directory, config."""

    variant: str
    seed: int
    path: Path
    cfg: RunConfig


def run_dir(root: str | Path, variant: str, seed: int) -> Path:
    """Where the run of (variant, seed) lives."""
    base = Path(root) / variant if variant else Path(root)
    return base / f"{SEED_DIR_PREFIX}{seed}"


@dataclass
class Experiment:
    """What an experiment runs: a config file (None: defaults), seeds, shared overrides,
    and variants (none: one set of runs)."""

    config: str | None
    seeds: list[int]
    overrides: list[str] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("an experiment needs at least one seed (e.g. --seeds 0,1,2)")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ConfigError(f"variant names must differ; got {names}")

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants] or [NO_VARIANT]

    def seed_config(self, variant: Variant | None, seed: int) -> RunConfig:
        """The config of one run: the experiment's, the variant's overrides, run_seed = seed."""
        overrides = [*self.overrides, *(variant.overrides if variant else ())]
        base = load_config(self.config, overrides)
        pinned = base.data.selection_seed
        if pinned is None:
            pinned = base.run_seed
        return load_config(
            self.config, [*overrides, f"run_seed={seed}", f"data.selection_seed={pinned}"]
        )

    def plan(self, root: str | Path) -> list[PlannedRun]:
        """Every (variant, seed) run with its directory and config (all configs validated)."""
        return [
            PlannedRun(
                v.name if v else NO_VARIANT,
                s,
                run_dir(root, v.name if v else NO_VARIANT, s),
                self.seed_config(v, s),
            )
            for v in (self.variants or [None])
            for s in self.seeds
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "seeds": list(self.seeds),
            "overrides": list(self.overrides),
            "variants": {v.name: list(v.overrides) for v in self.variants},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        return cls(
            config=data.get("config"),
            seeds=[int(s) for s in data.get("seeds", [])],
            overrides=list(data.get("overrides") or []),
            variants=[Variant(n, tuple(o)) for n, o in (data.get("variants") or {}).items()],
        )


def write_spec(root: str | Path, exp: Experiment) -> None:
    from anchor_service.rundir import write_atomic

    write_atomic(ExperimentDir(root).spec, yaml.safe_dump(exp.to_dict(), sort_keys=False))


def read_spec(root: str | Path) -> Experiment | None:
    """The experiment recorded in `root/experiment.yaml`, or None when there is none."""
    path = ExperimentDir(root, create=False).spec
    if not path.is_file():
        return None
    return Experiment.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def find_runs(root: str | Path) -> dict[str, dict[int, Path]]:
    """{variant (NO_VARIANT without variants): {seed: run dir}} of runs with a config.yaml.

    From experiment.yaml when present (so seeds left over from an earlier, larger experiment
    in the same directory are not counted), else from the directory layout.
    """
    root = Path(root)
    spec = read_spec(root)
    found: dict[str, dict[int, Path]] = {}
    if spec is not None:
        for variant in spec.variant_names:
            for seed in spec.seeds:
                path = run_dir(root, variant, seed)
                if RunDir(path, create=False).config.is_file():
                    found.setdefault(variant, {})[seed] = path
        return found
    configs = sorted(root.glob(f"{SEED_DIR_PREFIX}*/{CONFIG_FILE}"))
    configs += sorted(root.glob(f"*/{SEED_DIR_PREFIX}*/{CONFIG_FILE}"))
    for config in configs:
        run = config.parent
        variant = NO_VARIANT if run.parent == root else run.parent.name
        seed = run.name[len(SEED_DIR_PREFIX) :]
        if seed.isdigit():
            found.setdefault(variant, {})[int(seed)] = run
    return {v: dict(sorted(runs.items())) for v, runs in found.items()}


def is_experiment_dir(path: str | Path) -> bool:
    """experiment.yaml, or seed-<s>/ run directories and no config.yaml of its own."""
    path = Path(path)
    if ExperimentDir(path, create=False).spec.is_file():
        return True
    return not RunDir(path, create=False).config.is_file() and bool(find_runs(path))


def experiment_variants(experiment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{variant: aggregate} of experiment.json; one unnamed variant when it has none."""
    return experiment.get("variants") or {NO_VARIANT: experiment}


def experiment_of(
    config: str | None,
    seeds: str,
    overrides: list[str],
    strategies: str | None = None,
    variants: list[str] = (),
) -> tuple[Experiment, Path]:
    """The experiment of the command-line options (`--config demo` is the packaged demo) and
    its default directory, runs/<config name>-experiment."""
    from anchor_service.resources import demo_config_path

    path = str(demo_config_path()) if config == "demo" else config
    if path is not None and config != "demo":
        path = str(Path(path).resolve())
    overrides = list(overrides)
    if strategies:
        names = [s.strip() for s in strategies.split(",") if s.strip()]
        overrides.append(f"pairs.strategies=[{','.join(names)}]")
    exp = Experiment(
        config=path,
        seeds=parse_seeds(seeds),
        overrides=overrides,
        variants=[parse_variant(v) for v in variants],
    )
    stem = Path(config).stem if config else "default"
    return exp, Path("runs") / f"{stem}-experiment"
