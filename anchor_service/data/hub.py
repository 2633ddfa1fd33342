"""Hugging Face datasets (a hub id or a local directory) read through a `ColumnMap`.

`path` is one of:
- a directory written by `save_to_disk` (a Dataset or a DatasetDict): `load_from_disk`;
- another local directory or file of data files (parquet, json, csv): `load_dataset(path)`;
- a hub id, optionally with a config after a colon (`allenai/ai2_arc:ARC-Challenge`): the
  config's data files (as its dataset card's `configs` name them; all data files when the
  card names none) and the card are downloaded into the hub cache on first use
  (`anchor_service.hub_download`: HF_ENDPOINT, HF_HUB_OFFLINE, HF_HOME, HF_TOKEN, one
  download per cache under a file lock), then read with `load_dataset(<format>,
  data_files=...)` per split as the card declares them (without a card, as datasets reads
  a local folder). Loading scripts are not run (datasets 4 dropped them).
`{split}` in `path` is replaced by the split name. From a DatasetDict the split is taken by
name, trying the usual aliases (`dev` also finds `validation`, ...); a single Dataset, or a
DatasetDict with one split when the path named the split, is used as it is. Rows are then read
exactly as in `tabular` (dotted names reach nested features, e.g. `choices.text`); errors name
the dataset, the split and the 1-based row.
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path
from typing import Any

import yaml

from anchor_service.config import ColumnMap
from anchor_service.data.errors import DataNotFoundError, ExampleRows, LoadResult, OnBadRow
from anchor_service.data.paper import SPLIT_ALIASES, split_label
from anchor_service.data.tabular import dataset_name, example_from_row
from anchor_service.hub_download import HubAccessError, is_repo_id, snapshot

log = logging.getLogger(__name__)

_DATA_FILE_BUILDERS = {
    ".parquet": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".arrow": "arrow",
}


def split_candidates(split: str) -> list[str]:
    """The split itself, then its usual aliases (`dev` -> validation, valid, eval, ...)."""
    canonical = SPLIT_ALIASES.get(split.strip().lower())
    if canonical is None:
        return [split]
    aliases = [name for name, c in SPLIT_ALIASES.items() if c == canonical]
    return [split] + [a for a in aliases if a != split]


def _open(path: str) -> tuple[Any, bool]:
    """The dataset at `path` and whether it was given as one file (not a directory or id)."""
    import datasets

    local = Path(path).expanduser()
    if local.is_dir():
        if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
            return datasets.load_from_disk(str(local)), False
        return datasets.load_dataset(str(local)), False
    if local.is_file():
        builder = _DATA_FILE_BUILDERS.get(local.suffix.lower())
        if builder is None:
            raise DataNotFoundError(
                f"hf source: cannot read {local} (known data files: "
                f"{', '.join(_DATA_FILE_BUILDERS)}); use the jsonl or csv source"
            )
        return datasets.load_dataset(builder, data_files=str(local)), True
    hub_id, _, config = path.partition(":")
    if not is_repo_id(hub_id):
        raise DataNotFoundError(
            f"hf source: '{path}' is not a local directory or file, nor a hub id (org/name, "
            "optionally :config)"
        )
    try:
        snap = download_dataset(hub_id, config or None)
    except HubAccessError as exc:
        raise DataNotFoundError(f"hf source: '{path}' is not a local path; {exc}") from exc
    try:
        return _load_snapshot(snap, config or None), False
    except ValueError as exc:  # the card's header or configs
        raise DataNotFoundError(f"hf source: hub dataset '{path}' in {snap}: {exc}") from exc


def _card_configs(snap: Path) -> list[dict]:
    """The `configs` of a dataset card's YAML header (README.md), or [] when it has none."""
    card = snap / "README.md"
    if not card.is_file():
        return []
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return []
    header = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    try:
        meta = yaml.safe_load(header) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"its README.md header is not YAML ({exc})") from exc
    configs = meta.get("configs") if isinstance(meta, dict) else None
    return [c for c in configs if isinstance(c, dict)] if isinstance(configs, list) else []


def _split_patterns(entry: dict) -> dict[str, list[str]]:
    """A card config's `data_files` as {split: [patterns]} (a bare list means `train`)."""
    files = entry.get("data_files")
    out: dict[str, list[str]] = {}
    for item in [files] if isinstance(files, (str, dict)) else list(files or []):
        if isinstance(item, str):
            out.setdefault("train", []).append(item)
        elif isinstance(item, dict):
            paths = item.get("path")
            patterns = [paths] if isinstance(paths, str) else list(paths or [])
            out.setdefault(str(item.get("split", "train")), []).extend(patterns)
    return out


def _card_entry(configs: list[dict], config: str | None) -> dict:
    """The card config named `config` (None: the default one); ValueError lists the names."""
    names = [str(c.get("config_name", "default")) for c in configs]
    if config is None:
        default = [c for c in configs if c.get("default")] or (configs if len(configs) == 1 else [])
        if not default:
            raise ValueError(f"it has configs {', '.join(names)}: name one as id:config")
        return default[0]
    if config not in names:
        raise ValueError(f"it has no config '{config}' (configs: {', '.join(names)})")
    return configs[names.index(config)]


def card_split_files(snap: Path, files: list[str], config: str | None) -> dict[str, list[str]]:
    """{split: repository files} of a card-declared config; {} when the card declares none."""
    configs = _card_configs(snap)
    if not configs:
        return {}
    entry = _card_entry(configs, config)
    out = {
        split: [f for f in files if any(fnmatch.fnmatch(f, p) for p in patterns)]
        for split, patterns in _split_patterns(entry).items()
    }
    out = {split: chosen for split, chosen in out.items() if chosen}
    if not out:
        raise ValueError(f"config '{entry.get('config_name')}' names no file present")
    return out


def dataset_files(config: str | None):
    """The selector of hub_download.snapshot for one config of a dataset repository."""

    def select(snap: Path, files: list[str]) -> list[str]:
        card = ["README.md"] if "README.md" in files else []
        by_split = card_split_files(snap, files, config)
        if by_split:
            return card + sorted({f for chosen in by_split.values() for f in chosen})
        data = [f for f in files if Path(f).suffix.lower() in _DATA_FILE_BUILDERS]
        if config and any(f.startswith(f"{config}/") for f in data):
            data = [f for f in data if f.startswith(f"{config}/")]
        if not data:
            raise ValueError(f"no data files ({', '.join(_DATA_FILE_BUILDERS)}) in the repository")
        return card + data

    return select


def _load_snapshot(snap: Path, config: str | None) -> Any:
    """A downloaded dataset snapshot as a DatasetDict: the card's files per split, else the
    directory (or the config's folder) as datasets reads a local folder."""
    import datasets

    files = [p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file()]
    by_split = card_split_files(snap, files, config)
    if not by_split:
        folder = snap / config if config and (snap / config).is_dir() else snap
        return datasets.load_dataset(str(folder))
    suffixes = {Path(f).suffix.lower() for chosen in by_split.values() for f in chosen}
    builders = {_DATA_FILE_BUILDERS.get(s) for s in suffixes}
    if len(builders) != 1 or None in builders:
        raise DataNotFoundError(f"{snap}: the config's files mix or lack formats ({suffixes})")
    data_files = {split: [str(snap / f) for f in chosen] for split, chosen in by_split.items()}
    return datasets.load_dataset(builders.pop(), data_files=data_files)


def download_dataset(hub_id: str, config: str | None = None) -> Path:
    """The local snapshot of a hub dataset's card and one config's data files. HubAccessError."""
    return snapshot(hub_id, dataset_files(config), ["README.md"], repo_type="dataset")


def _pick_split(data: Any, split: str, where: str, one_split_ok: bool) -> tuple[Any, str]:
    import datasets

    if isinstance(data, datasets.Dataset):
        return data, split
    available = list(data.keys())
    for name in split_candidates(split):
        if name in data:
            return data[name], name
    if one_split_ok and len(available) == 1:
        return data[available[0]], available[0]
    raise DataNotFoundError(
        f"{where} has no split '{split}' (available: {', '.join(available) or 'none'}); "
        "set data.train_split / data.test_split to one of them"
    )


def open_split(path: str, split: str) -> tuple[Any, str]:
    """One split of a Hugging Face dataset (hub id or local path) and a name for messages."""
    resolved = path.replace("{split}", split)
    data, one_file = _open(resolved)
    table, chosen = _pick_split(
        data, split, f"hf dataset {resolved}", one_file or "{split}" in path
    )
    return table, f"hf dataset {resolved} split '{chosen}'"


def load_hub(
    path: str, columns: ColumnMap, split: str, on_bad_row: OnBadRow = "error"
) -> LoadResult:
    """Examples of one split of a Hugging Face dataset (hub id or local directory)."""
    resolved = path.replace("{split}", split)
    table, where = open_split(path, split)
    # Named from the template (so every split gets the same name); a hub config names it best.
    is_local = Path(resolved).expanduser().exists()
    hub_id, _, config = ("", "", "") if is_local else path.partition(":")
    dataset = dataset_name(config or hub_id or path, "hf")
    label = split_label(split)
    rows = ExampleRows(where, on_bad_row, unit="row")
    for index, record in enumerate(table, 1):
        rows.take(index, example_from_row, record, columns, dataset, label, index)
    log.info("%s: %d examples, %d skipped", where, len(rows.examples), len(rows.reasons))
    return rows.result(f"{where} ({len(rows.examples)} examples)")
