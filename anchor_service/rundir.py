"""The run directory: where every stage reads and writes (ARCHITECTURE.md file contract).

Besides the contract's files it keeps, per stage, a `state/<stage>.json` marker (the stage's
fingerprint, written last, when the output is complete) and `parts/<stage>/` (pieces written
as batches finish, so a stage cut off part way keeps what it computed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

# The per-step log each trainer writes beside its model (schema.TRAIN_LOG_COLUMNS).
TRAIN_LOG_FILE = "train_log.parquet"


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able values (stage name, its config, upstream fingerprints)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file so a reader (or a resumed run) never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def write_json_atomic(obj: Any, path: Path) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def default_run_dir(config_path: str | None, run_seed: int) -> Path:
    """`runs/<config file stem>-seed<run_seed>`, where a run goes when no --out is given."""
    stem = Path(config_path).stem if config_path else "default"
    return Path("runs") / f"{stem}-seed{run_seed}"


CONFIG_FILE = "config.yaml"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES = "figures"


class ReportDir:
    """What a run directory and an experiment directory both hold: report.md, report.html
    and figures/ beside the summary file (`summary_name`) the report is built from."""

    summary_name = "summary.json"

    def __init__(self, root: str | Path, create: bool = True):
        self.root = Path(root).resolve()
        if create:
            self.root.mkdir(parents=True, exist_ok=True)

    @property
    def summary(self) -> Path:
        return self.root / self.summary_name

    @property
    def report_md(self) -> Path:
        return self.root / REPORT_MD

    @property
    def report_html(self) -> Path:
        return self.root / REPORT_HTML

    def figure(self, name: str) -> Path:
        """figures/<name> (figures/ beside report.md, which links them by that path)."""
        return self.root / FIGURES / name

    @property
    def report_files(self) -> tuple[Path, ...]:
        """The summary and the report, in the order a command prints them."""
        return (self.summary, self.report_md, self.report_html)


class RunDir(ReportDir):
    """Paths of one run and the done/parts bookkeeping of its stages."""

    # --- contract files -------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def samples(self) -> Path:
        return self.root / "samples.parquet"

    @property
    def debates(self) -> Path:
        return self.root / "debates.parquet"

    @property
    def scores(self) -> Path:
        return self.root / "scores.parquet"

    def pairs(self, strategy: str) -> Path:
        return self.root / f"pairs-{strategy}.parquet"

    def stats(self, strategy: str) -> Path:
        return self.root / f"stats-{strategy}.json"

    def model(self, name: str) -> Path:
        return self.root / "models" / name

    def train_log(self, name: str) -> Path:
        """The per-step training log of models/<name>/ (schema.TRAIN_LOG_COLUMNS)."""
        return self.model(name) / TRAIN_LOG_FILE

    def trained_models(self) -> list[str]:
        """The models with a per-step training log (sft and each trained strategy)."""
        return sorted(p.parent.name for p in (self.root / "models").glob(f"*/{TRAIN_LOG_FILE}"))

    @property
    def tracking(self) -> Path:
        """Where the file-writing trackers write when `tracking.dir` is unset."""
        return self.root / "tracking"

    def eval_answers(self, model: str) -> Path:
        return self.root / "eval" / f"answers-{model}.parquet"

    def evaluated_models(self) -> set[str]:
        """The models with an eval/answers-<model>.parquet."""
        found = (self.root / "eval").glob("answers-*.parquet")
        return {p.name[len("answers-") : -len(".parquet")] for p in found}

    def eval_scores(self, model: str) -> Path:
        return self.root / "eval" / f"scores-{model}.parquet"

    def oracle_scores(self, model: str | None = None) -> Path:
        """The demo oracle's scores of what an LLM judge scored (for `judge_agreement`):
        the samples and debates (model None) or one model's evaluation answers."""
        name = "scores.parquet" if model is None else f"eval-scores-{model}.parquet"
        return self.root / "oracle" / name

    def sanity_scores(self, role: str) -> Path:
        """The `role` judge's scores of the check set (alignment or evaluation)."""
        return self.root / "sanity" / f"scores-{role}.parquet"

    @property
    def sanity(self) -> Path:
        """The judges' sanity figures (METHOD.md step 7)."""
        return self.root / "sanity" / "sanity.json"

    def validation_answers(self, model: str) -> Path:
        """With rounds (k > 1, stop rule on): a model's greedy answers on the validation split."""
        return self.root / "validation" / f"answers-{model}.parquet"

    def validation_scores(self, model: str) -> Path:
        """The evaluation judge's scores of `validation_answers(model)`."""
        return self.root / "validation" / f"scores-{model}.parquet"

    def round_dir(self, r: int, strategy: str) -> RunDir:
        """Round r >= 2 of one strategy: a run directory of its own (samples, debates, scores,
        pairs, stats, models/<strategy>/, eval/, validation/, state/) under rounds/<r>/."""
        if r < 2:
            raise ValueError(f"round {r}: round 1 is the run directory itself")
        return RunDir(self.root / "rounds" / str(r) / strategy, create=False)

    @property
    def rounds_record(self) -> Path:
        """Which rounds ran, each round's stop-rule figures, why each strategy stopped."""
        return self.root / "rounds" / "rounds.json"

    @property
    def timings(self) -> Path:
        return self.root / "state" / "timings.json"

    @property
    def train_storage(self) -> Path:
        return self.root / "ray_train"

    # --- stage bookkeeping ----------------------------------------------------------
    def _state(self, stage: str) -> Path:
        return self.root / "state" / f"{stage}.json"

    def parts_dir(self, stage: str) -> Path:
        return self.root / "parts" / stage

    def is_done(self, stage: str, fp: str) -> bool:
        """True when the stage finished with this exact fingerprint."""
        p = self._state(stage)
        if not p.is_file():
            return False
        try:
            return json.loads(p.read_text()).get("fingerprint") == fp
        except (OSError, json.JSONDecodeError):
            return False

    def mark_done(self, stage: str, fp: str, **info: Any) -> None:
        write_json_atomic(
            {"stage": stage, "fingerprint": fp, "finished": time.time(), **info},
            self._state(stage),
        )

    def state(self, stage: str) -> dict | None:
        p = self._state(stage)
        return json.loads(p.read_text()) if p.is_file() else None

    def open_parts(self, stage: str, fp: str) -> Path:
        """The parts folder of a stage for this fingerprint; parts of another config are removed."""
        d = self.parts_dir(stage)
        marker = d / "FINGERPRINT"
        if d.exists() and (not marker.is_file() or marker.read_text().strip() != fp):
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)
        if not marker.is_file():
            write_atomic(marker, fp)
        return d

    def new_part(self, stage: str) -> Path:
        """A fresh part file of a stage in progress (a batch's rows)."""
        return self.parts_dir(stage) / f"part-{uuid.uuid4().hex}.parquet"

    def read_parts(self, stage: str) -> pd.DataFrame | None:
        d = self.parts_dir(stage)
        files = sorted(d.glob("part-*.parquet")) if d.is_dir() else []
        if not files:
            return None
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    def clear_parts(self, stage: str) -> None:
        shutil.rmtree(self.parts_dir(stage), ignore_errors=True)
