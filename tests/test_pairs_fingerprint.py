"""A strategy's pairs (and so its DPO model) are fingerprinted by what builds them, not by the
list of strategies: adding `maxmin` to a finished run must not retrain `anchor` and `rank`."""

from __future__ import annotations

from anchor_service.config import load_config
from anchor_service.recipe.method import MethodRun


def _pairs_fp(tmp_path, name: str, overrides: list[str], strategy: str) -> str:
    run = MethodRun(load_config(None, overrides), tmp_path / name)
    run.fp["judge"] = "judged"  # the upstream stage, as a finished run records it
    return run.pairs_fingerprint(strategy)


def test_adding_a_strategy_leaves_the_others_fingerprints_alone(tmp_path):
    two = _pairs_fp(tmp_path, "a", ["pairs.strategies=[anchor,rank]"], "anchor")
    four = _pairs_fp(
        tmp_path, "b", ["pairs.strategies=[anchor,rank,maxmin,label_filter]"], "anchor"
    )
    assert two == four
    # What does build the pairs still counts.
    other_rule = _pairs_fp(tmp_path, "c", ["pairs.variable_rejected=highest"], "anchor")
    assert other_rule != two
    assert _pairs_fp(tmp_path, "d", [], "rank") != two
