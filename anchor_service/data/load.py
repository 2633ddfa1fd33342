"""One entry point for every data source: `load_examples(cfg, split, run_seed) -> LoadResult`.

`split` is a split name (normally `cfg.train_split` or `cfg.test_split`) or the role `train`
/ `test`, which then means the config's `train_split` / `test_split`; the role decides which
limit applies (`limit_train` / `limit_test`) and, for the demo task, how many questions
(`demo.n_train` / `demo.n_test`). A limit keeps a seeded random subset (`selection_seed`,
else `run_seed`), returned in the original order.

The paper datasets are read from the data directory: `cfg.data_dir`, else `$ANCHOR_DATA_DIR`,
else `../shared/data` from the working directory, else `../shared/data` from the repository
root (the parent of the package directory). Where a split's file (or any data directory) is
absent, its hub copy is read instead (`cfg.hub_fallback`, data/paper_hub.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from anchor_service.config import DataConfig
from anchor_service.core.keys import keyed_rng
from anchor_service.core.types import Example
from anchor_service.data.errors import DataError, DataNotFoundError, LoadResult
from anchor_service.data.hub import load_hub
from anchor_service.data.paper import PAPER_DATASETS, load_paper, split_label
from anchor_service.data.paper_hub import HUB_COPIES, load_paper_hub
from anchor_service.data.tabular import dataset_name, read_table

__all__ = ["LoadResult", "load_examples", "resolve_data_dir", "select_subset"]

log = logging.getLogger(__name__)

ENV_DATA_DIR = "ANCHOR_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
_SHARED = Path("..") / "shared" / "data"


def resolve_data_dir(data_dir: str | None = None) -> Path:
    """The folder holding the paper datasets (see the module docstring for the search order)."""
    for given, what in ((data_dir, "data.data_dir"), (os.environ.get(ENV_DATA_DIR), ENV_DATA_DIR)):
        if given:
            path = Path(given).expanduser()
            if not path.is_dir():
                raise DataNotFoundError(f"{what} = {given}: {path} is not a directory")
            return path
    tried = [Path.cwd() / _SHARED, REPO_ROOT / _SHARED]
    for path in tried:
        if path.is_dir():
            return path.resolve()
    raise DataNotFoundError(
        "no data directory for the paper datasets; tried data.data_dir (unset), "
        f"${ENV_DATA_DIR} (unset), {tried[0]}, {tried[1]}; set data.data_dir or ${ENV_DATA_DIR}"
    )


def select_subset(examples: list[Example], limit: int | None, seed: int, key: str) -> list[Example]:
    """At most `limit` examples, a random subset keyed by (seed, key), in their original order."""
    if limit is None or limit >= len(examples):
        return list(examples)
    rng = keyed_rng(("data-selection", seed, key))
    keep = sorted(rng.sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def _role(cfg: DataConfig, split: str) -> tuple[str | None, str]:
    """(role, split name): the role is `train`, `test`, or None for another named split."""
    if split == cfg.train_split:
        return "train", split
    if split == cfg.test_split:
        return "test", split
    if split == "train":
        return "train", cfg.train_split
    if split == "test":
        return "test", cfg.test_split
    return None, split


def _read_paper(cfg: DataConfig, split: str) -> LoadResult:
    """A paper dataset's split from its file, else (`hub_fallback`) from its hub copy."""
    try:
        return load_paper(cfg.source, resolve_data_dir(cfg.data_dir), split, cfg.on_bad_row)
    except DataNotFoundError as exc:
        given_dir_missing = cfg.data_dir and not Path(cfg.data_dir).expanduser().is_dir()
        if not cfg.hub_fallback or given_dir_missing:
            raise
        local = str(exc)
    copy = cfg.path or HUB_COPIES[cfg.source]
    log.warning("%s; reading the hub copy %s instead", local, copy)
    try:
        return load_paper_hub(cfg.source, split, cfg.on_bad_row, copy)
    except DataNotFoundError as exc:
        raise DataNotFoundError(f"{local}; and its hub copy: {exc}") from exc


def _read(cfg: DataConfig, role: str | None, split: str) -> LoadResult:
    source = cfg.source
    if source == "demo":
        # Imported here: the demo package uses data.errors, so a top-level import would circle.
        from anchor_service.demo.task import demo_split, generate_demo

        name = demo_split(split)
        n = cfg.demo.n_train if (role or name) == "train" else cfg.demo.n_test
        examples = generate_demo(n, cfg.demo.seed, name)
        return LoadResult(examples, source=f"demo {name} (seed {cfg.demo.seed}, {n} questions)")
    if source in PAPER_DATASETS:
        return _read_paper(cfg, split)
    if source in ("jsonl", "csv", "hf"):
        if not cfg.path:
            raise DataError(f"data.source '{source}' needs data.path (a file, or {{split}} in it)")
        if source == "hf":
            return load_hub(cfg.path, cfg.columns, split, cfg.on_bad_row)
        path = Path(cfg.path.replace("{split}", split)).expanduser()
        name = dataset_name(cfg.path, source)
        return read_table(path, cfg.columns, name, split_label(split), source, cfg.on_bad_row)
    known = ", ".join(["demo", *PAPER_DATASETS, "jsonl", "csv", "hf"])
    raise DataError(f"unknown data.source '{source}'; known: {known}")


def load_examples(cfg: DataConfig, split: str, run_seed: int) -> LoadResult:
    """The examples of one split under `cfg` (source, limits, bad-row policy)."""
    role, name = _role(cfg, split)
    result = _read(cfg, role, name)
    if not result.examples:
        first = f"; first: {result.skipped_reasons[0]}" if result.skipped_reasons else ""
        raise DataError(
            f"{result.source or cfg.source}: no usable examples in split '{name}' "
            f"({result.skipped} malformed rows skipped{first})"
        )
    limit = {"train": cfg.limit_train, "test": cfg.limit_test}.get(role or "")
    seed = run_seed if cfg.selection_seed is None else cfg.selection_seed
    examples = select_subset(result.examples, limit, seed, f"{cfg.source}/{name}")
    source = result.source
    if len(examples) < len(result.examples):
        source += f"; {len(examples)} of {len(result.examples)} selected (seed {seed})"
    if result.skipped:
        source += f"; {result.skipped} malformed rows skipped"
    log.info("data %s: %s", name, source)
    return LoadResult(examples, result.skipped, list(result.skipped_reasons), source)
