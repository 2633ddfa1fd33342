"""Run one engine-owning stage over rows with Ray Data, resumably.

The rows to compute are planned from their keys (prompt_id, sample_idx, ...). Rows already in
the stage's part files are not sent again; every batch that comes back is written as its own
part file at once, so kill -9 loses at most the batches in flight. Because each row's
randomness comes from its key, the recomputed rows equal what an uninterrupted run would have
produced; the final file is the union of the parts, de-duplicated by key and sorted by key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from anchor_service.config import ModelSpec, StageResources
from anchor_service.engines.placement import stage_placement
from anchor_service.faults import kill_point
from anchor_service.progress import StageProgress
from anchor_service.rundir import RunDir, fingerprint, write_parquet_atomic

log = logging.getLogger(__name__)


def _key_tuples(df: pd.DataFrame, keys: Sequence[str]) -> set[tuple]:
    return set(map(tuple, df[list(keys)].astype(str).itertuples(index=False, name=None)))


@dataclass(frozen=True)
class StageSpec:
    """One engine-owning stage of a run, everything the runner needs to place and resume it."""

    name: str
    """The stage's name: its `state/<name>.json` marker and `parts/<name>/` folder."""
    rows: pd.DataFrame
    """The input rows (all of them; rows already in the stage's part files are not resent)."""
    keys: tuple[str, ...]
    """Columns that identify an input row; they are carried into its output rows."""
    stage_cls: type
    """The Ray Data callable class mapped over the batches."""
    args: dict[str, Any]
    """Constructor arguments of `stage_cls` (plain JSON-able values: they travel to actors)."""
    resources: StageResources
    """Actors, batch size and per-actor CPUs/GPUs of the stage."""
    out_path: Path
    """The run-directory file the stage writes (a `RunDir` path)."""
    fingerprint_parts: tuple[Any, ...]
    """What the stage's result depends on; equal parts mean the stage is skipped when done."""
    model: ModelSpec | None = None
    """The model the stage's actors load, for placement (None: no model, e.g. the oracle)."""
    out_keys: tuple[str, ...] | None = None
    """Columns that identify an output row (default `keys`; a debate writes several attempts)."""
    progress: bool = field(default=True, compare=False)
    """Show the stage's progress (`StageProgress`: a bar on a terminal, a few lines otherwise)."""

    @property
    def fingerprint(self) -> str:
        return fingerprint(*self.fingerprint_parts)

    def check_input_columns(self) -> None:
        """Raise when `rows` lack a column the stage class declares it reads (INPUT_COLUMNS)."""
        needed = getattr(self.stage_cls, "INPUT_COLUMNS", ())
        missing = [c for c in (*self.keys, *needed) if c not in self.rows.columns]
        if missing and len(self.rows):
            raise ValueError(f"stage {self.name}: input rows lack the columns {missing}")


def run_stage(rundir: RunDir, spec: StageSpec) -> pd.DataFrame:
    """Compute `spec.stage_cls` over the rows not done yet and write `spec.out_path`.

    Skips everything when the stage is already done with the spec's fingerprint.
    """
    keys, stage, fp, out_path = list(spec.keys), spec.name, spec.fingerprint, spec.out_path
    out_keys = list(spec.out_keys or keys)
    if rundir.is_done(stage, fp) and out_path.is_file():
        log.info("%s: done already (config unchanged), skipping", stage)
        return pd.read_parquet(out_path)
    spec.check_input_columns()
    rundir.open_parts(stage, fp)
    done = rundir.read_parts(stage)
    done_keys = _key_tuples(done, keys) if done is not None else set()
    # Batches are planned from the keys alone (the rows sorted by key, cut every batch_size),
    # so a resumed run recomputes exactly the batches an uninterrupted run computed, with the
    # same composition: engines then give bit-identical results, padding included.
    ordered = spec.rows.sort_values(keys, key=_sort_key).reset_index(drop=True)
    size = spec.resources.batch_size
    planned = [ordered.iloc[i : i + size] for i in range(0, len(ordered), size)]
    todo = [b for b in planned if not _key_tuples(b, keys) <= done_keys]
    t0 = time.perf_counter()
    if done_keys:
        log.info(
            "%s: resuming, %d of %d batches already written",
            stage,
            len(planned) - len(todo),
            len(planned),
        )
    if todo:
        _map_with_ray(todo, spec, rundir)
    out = rundir.read_parts(stage)
    if out is None:
        out = pd.DataFrame(columns=list(getattr(spec.stage_cls, "COLUMNS", out_keys)))
    out = (
        out.drop_duplicates(subset=out_keys, keep="first")
        .sort_values(out_keys, key=_sort_key)
        .reset_index(drop=True)
    )
    expected = _key_tuples(spec.rows, keys)
    got = _key_tuples(out, keys)
    if got != expected:
        missing = sorted(expected - got)[:5]
        raise RuntimeError(
            f"{stage}: {len(expected - got)} rows missing after the run, e.g. {missing}"
        )
    write_parquet_atomic(out, out_path)
    rundir.mark_done(stage, fp, rows=len(out), seconds=round(time.perf_counter() - t0, 1))
    rundir.clear_parts(stage)
    return out


def _sort_key(col: pd.Series) -> pd.Series:
    # Natural order for ids like demo/train/10 vs demo/train/9, and for integer columns.
    if col.dtype == object:
        return col.map(_natural)
    return col


def _natural(value: Any) -> tuple:
    import re

    return tuple(
        (0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(value)) if t
    )


def stage_dataset(
    todo: list[pd.DataFrame],
    stage_cls: type,
    ctor_kwargs: dict[str, Any],
    res: StageResources,
    placement_kwargs: dict[str, Any],
) -> Any:
    """The Ray Dataset that maps `stage_cls` over the planned batches `todo` (not executed).

    One block per planned batch, and batch_size = the largest planned batch: each call gets
    exactly one planned batch (only the last planned batch is smaller, and it comes last).
    batch_size=None would mean the same, but Ray Data refuses it for actors that request GPUs.
    """
    import ray

    ctx = ray.data.DataContext.get_current()
    # Ray Data samples each map worker's USS every second for its memory metrics by reading
    # /proc/PID/smaps, which is slow for a process holding a model and takes CPU from the
    # actor's torch threads (docs/DESIGN.md). Our stages' memory is the engine's, known in
    # advance: no need.
    ctx.memory_usage_poll_interval_s = None
    ds = ray.data.from_pandas([b.reset_index(drop=True) for b in todo])
    return ds.map_batches(
        stage_cls,
        fn_constructor_kwargs=ctor_kwargs,
        batch_size=max(len(b) for b in todo),
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=res.actors),
        **placement_kwargs,
    )


def _map_with_ray(todo: list[pd.DataFrame], spec: StageSpec, rundir: RunDir) -> None:
    import ray

    from anchor_service.cluster import ensure_ray

    ensure_ray()
    # Our own bar counts input rows across the whole stage; Ray Data's per-operator bars
    # would count blocks and output rows beside it.
    ray.data.DataContext.get_current().enable_progress_bars = False
    # num_cpus/num_gpus per actor, or a placement group of TP bundles per vLLM actor.
    placement = stage_placement(spec.model, spec.resources, spec.name)
    keys, total = list(spec.keys), len(spec.rows)
    parts = 0
    # Rows of batches not in `todo` were written before (a resumed stage).
    done = total - sum(len(b) for b in todo)
    progress = StageProgress(spec.name, total, done=done, enabled=spec.progress)
    try:
        ds = stage_dataset(todo, spec.stage_cls, spec.args, spec.resources, placement.kwargs)
        # Each result is saved as its own part file as soon as it arrives.
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            if len(batch) == 0:
                continue
            write_parquet_atomic(batch, rundir.new_part(spec.name))
            parts += 1
            # Input rows, not output rows: a debate writes several attempts per prompt.
            progress.update(len(_key_tuples(batch, keys)))
            kill_point(spec.name, parts)  # a test hook, inert unless set (faults.py)
    finally:
        progress.close()
        placement.release()
