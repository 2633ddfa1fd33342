"""Hugging Face datasets (a hub id or a local directory) read through a `ColumnMap`.

`path` is one of:
- a directory written by `save_to_disk` (a Dataset or a DatasetDict): `load_from_disk`;
- another local directory or file of data files (parquet, json, csv): `load_dataset(path)`;
- a hub id, optionally with a config after a colon (`allenai/ai2_arc:ARC-Challenge`):
  `load_dataset(id, config)`, which needs network access (or a filled local cache).
`{split}` in `path` is replaced by the split name. From a DatasetDict the split is taken by
name, trying the usual aliases (`dev` also finds `validation`, ...); a single Dataset, or a
DatasetDict with one split when the path named the split, is used as it is. Rows are then read
exactly as in `tabular` (dotted names reach nested features, e.g. `choices.text`); errors name
the dataset, the split and the 1-based row.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from anchor_service.config import ColumnMap
from anchor_service.data.errors import DataNotFoundError, ExampleRows, LoadResult, OnBadRow
from anchor_service.data.paper import SPLIT_ALIASES, split_label
from anchor_service.data.tabular import dataset_name, example_from_row

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
    try:
        return datasets.load_dataset(hub_id, config or None), False
    except Exception as exc:  # the hub raises many types (network, not found, gated)
        raise DataNotFoundError(
            f"hf source: '{path}' is not a local directory or file, and loading it from the "
            f"hub failed ({type(exc).__name__}: {exc}). Without network, save the dataset with "
            "save_to_disk and point data.path at that directory"
        ) from exc


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


def load_hub(
    path: str, columns: ColumnMap, split: str, on_bad_row: OnBadRow = "error"
) -> LoadResult:
    """Examples of one split of a Hugging Face dataset (hub id or local directory)."""
    resolved = path.replace("{split}", split)
    data, one_file = _open(resolved)
    table, chosen = _pick_split(
        data, split, f"hf dataset {resolved}", one_file or "{split}" in path
    )
    where = f"hf dataset {resolved} split '{chosen}'"
    # Named from the template (so every split gets the same name); a hub config names it best.
    is_local = Path(resolved).expanduser().exists()
    hub_id, _, config = ("", "", "") if is_local else path.partition(":")
    dataset = dataset_name(config or hub_id or path, "hf")
    label = split_label(split)
    rows = ExampleRows(where, on_bad_row, unit="row")
    for index, record in enumerate(table, 1):
        try:
            example = example_from_row(record, columns, dataset, label, index)
        except ValueError as exc:
            rows.bad(index, str(exc))
            continue
        rows.add(example, index)
    log.info("%s: %d examples, %d skipped", where, len(rows.examples), len(rows.reasons))
    return rows.result(f"{where} ({len(rows.examples)} examples)")
