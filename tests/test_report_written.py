"""The report's "where both wrote an explanation" rows, from run files with empty explanations."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from synthetic_run import write_run

from anchor_service.config import dump_config, load_config
from anchor_service.evaluation.stats import pairwise_rows
from anchor_service.report.summary import write_summary


def _empty_some(run: Path, model: str, every: int) -> set[str]:
    """Make every `every`-th explanation of `model` empty (score 0, as the judge stage does)."""
    path = run / "eval" / f"scores-{model}.parquet"
    df = pd.read_parquet(path)
    empty = df.index % every == 0
    df.loc[empty, "status"] = "empty"
    df.loc[empty, "score"] = 0
    df.to_parquet(path, index=False)
    return set(df.loc[empty, "prompt_id"])


def test_empty_explanations_are_left_out_of_the_written_rows_only(tmp_path: Path):
    run = tmp_path / "run"
    config = dump_config(load_config(None, ["evaluation.bootstrap=200", "eval_judge.mode=oracle"]))
    write_run(run, config, seed=3, n_test=60, quality={"sft": 8.0})
    empty_sft = _empty_some(run, "sft", every=3)
    summary = write_summary(run)

    full = {(r["a"], r["b"]): r for r in summary["pairwise"]}
    written = {(r["a"], r["b"]): r for r in summary["pairwise_written"]}
    assert written.keys() == full.keys()
    assert written[("sft", "base")]["n"] == 60 - len(empty_sft)
    assert written[("anchor", "base")]["n"] == 60
    # Rows of models that always wrote are the full-set comparison itself.
    untouched = {k for k in ("value", "ci_low", "ci_high", "wins", "ties", "losses")}
    assert {k: written[("anchor", "base")][k] for k in untouched} == {
        k: full[("anchor", "base")][k] for k in untouched
    }
    # sft's empty answers lose on the full set and are gone from the written rows.
    kept = pd.read_parquet(run / "eval" / "scores-sft.parquet")["status"] == "scored"
    base = pd.read_parquet(run / "eval" / "scores-base.parquet")["score"][kept].tolist()
    sft = pd.read_parquet(run / "eval" / "scores-sft.parquet")["score"][kept].tolist()
    expected = pairwise_rows({"base": base, "sft": sft}, seed=0, n_resamples=200)[0]
    assert written[("sft", "base")]["value"] == expected["value"]
    assert full[("sft", "base")]["losses"] > written[("sft", "base")]["losses"]

    text = (run / "report.md").read_text()
    assert "## Where both wrote an explanation" in text
    assert f"sft {60 - len(empty_sft)} written / {len(empty_sft)} empty" in text
    row = next(
        x for x in text.splitlines() if x.startswith(f"| sft | base | {60 - len(empty_sft)} |")
    )
    assert f"{expected['value']:+.1f}" in row
