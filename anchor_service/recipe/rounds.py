"""Iterative anchored rounds (METHOD.md "Rounds"): steps 1-7 again from each DPO'd policy.

Round 1 is the run itself (MethodRun). Round r >= 2 of a trained strategy samples from that
strategy's round r-1 policy (`sft` + its round r-1 adapter), re-judges with the same
alignment judge, re-categorises, rebuilds the strategy's pairs (the debater as configured)
and trains DPO again on `sft` (reference: the adapter switched off), in its own run
directory `rounds/<r>/<strategy>/` (`round_run`: the run's steps there), so every stage is
fingerprinted and resumable as in round 1. Round 2 always runs: round 1 is the one-round
method, judged against sft by the evaluation itself, and gating it on the small validation
split would stop most runs before any iteration (docs/DESIGN.md "Rounds"). With the stop rule
on, round r+1 (r >= 2) runs only while round r beats round r-1 on the validation split
(evaluation/rounds.py). `rounds/rounds.json` records which rounds ran, every decision and
why each strategy stopped.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anchor_service.evaluation.rounds import stop_rule
from anchor_service.report.scored import load_scored, score_list
from anchor_service.rundir import RunDir, write_json_atomic

log = logging.getLogger(__name__)


def round_run(parent: Any, r: int, strategy: str, previous: tuple[str, Path]) -> Any:
    """Round r >= 2 of one strategy: a copy of the run (`recipe.method.MethodRun`) whose
    steps work in rounds/<r>/<strategy>/ and sample from the strategy's round r-1 policy
    (`previous`: its DPO fingerprint and adapter). The data, the judges and SFT are the run's."""
    rc = parent.cfg.rounds
    fp, adapter = previous
    rr = copy.copy(parent)
    rr.rundir = parent.rundir.round_dir(r, strategy)
    rr.rundir.root.mkdir(parents=True, exist_ok=True)
    rr.fp = {k: parent.fp[k] for k in ("train", "test", "validation", "sft") if k in parent.fp}
    rr.strategies = [strategy]
    policy = parent.sft_model().model_copy(update={"adapter": str(adapter)})
    rr.round_policy = (strategy, policy, fp)
    rr.round_init = (fp, str(adapter)) if rc.init == "continue" else None
    rr.stage_prefix = f"rounds/{r}/{strategy}/"
    return rr


@dataclass
class Chain:
    """One strategy's rounds: those that trained a model, the stop-rule decisions, the end."""

    strategy: str
    trained: list[int] = field(default_factory=lambda: [1])
    decisions: dict[int, dict[str, Any]] = field(default_factory=dict)
    stopped: str | None = None

    def accepted(self, stop: bool) -> int:
        """The last accepted round: round 1 always; round r >= 2 while it passed the rule."""
        last = 1
        for r in self.trained[1:]:
            if stop and not self.decisions.get(r, {}).get("passed"):
                break
            last = r
        return last

    def record(self, stop: bool) -> dict[str, Any]:
        return {
            "trained_rounds": self.trained,
            "reported_round": self.accepted(stop),
            "stopped": self.stopped,
            "decisions": [self.decisions[r] for r in sorted(self.decisions)],
        }


def validation_files(rundir: RunDir, strategy: str, r: int) -> tuple[Path, Path]:
    """Where the round-r model (r >= 1) of `strategy` has its validation answers/scores."""
    home = rundir if r == 1 else rundir.round_dir(r, strategy)
    return home.validation_answers(strategy), home.validation_scores(strategy)


def decide(run: Any, chain: Chain, r: int) -> dict[str, Any]:
    """The stop rule on round r of a chain (against round r-1), kept in the chain."""
    rc = run.cfg.rounds
    prev, cur = (load_scored(*validation_files(run.rundir, chain.strategy, i)) for i in (r - 1, r))
    if prev["prompt_id"].tolist() != cur["prompt_id"].tolist():
        raise ValueError(f"round {r} of {chain.strategy}: validation questions differ")
    decision = stop_rule(
        ([bool(c) for c in prev["correct"]], score_list(prev)),
        ([bool(c) for c in cur["correct"]], score_list(cur)),
        strategy=chain.strategy,
        r=r,
        seed=run.cfg.run_seed,
        min_delta_ci_low=rc.min_delta_ci_low,
        max_accuracy_drop=rc.max_accuracy_drop,
        n_resamples=run.cfg.evaluation.bootstrap,
    )
    chain.decisions[r] = decision
    verdict = "passed" if decision["passed"] else f"failed ({decision['reason']})"
    log.info("rounds: %s round %d against round %d: %s", chain.strategy, r, r - 1, verdict)
    return decision


def one_round(run: Any, chain: Chain, r: int, previous: tuple[str, Path]) -> Any:
    """Round r of one strategy, steps 1-7; None when its pairs are below min_pairs."""
    cfg, s = run.cfg, chain.strategy
    log.info(
        "rounds: round %d of %d, %s: sampling from its round %d policy", r, cfg.rounds.k, s, r - 1
    )
    rr = round_run(run, r, s, previous)
    samples = rr.sample()
    debates = rr.debate(samples)
    scores = rr.judge(samples, debates)
    stats = rr.pairs(samples, scores, debates)
    if not rr.dpo(s, stats[s]):
        chain.stopped = (
            f"round {r} built {sum(stats[s]['pairs'].values())} pairs, below pairs.min_pairs"
        )
        return None
    chain.trained.append(r)
    if cfg.evaluation.enabled:
        rr.evaluate({s: rr.strategy_model(s)})
    if cfg.rounds.stop:
        rr.evaluate({s: rr.strategy_model(s)}, split="validation")
    return rr


def run_rounds(run: Any, trained: list[str]) -> dict[str, Any]:
    """Rounds 2..k of every trained strategy (round 1 done), then rounds/rounds.json."""
    rc = run.cfg.rounds
    chains = {s: Chain(s) for s in trained}
    previous = {s: (run.fp[f"dpo-{s}"], run.rundir.model(s)) for s in trained}
    if rc.stop:
        run.evaluate({s: run.strategy_model(s) for s in trained}, split="validation")
    active = list(trained)
    for r in range(2, rc.k + 1):
        for s in list(active):
            chain = chains[s]
            if rc.stop and r >= 3 and not decide(run, chain, r - 1)["passed"]:
                chain.stopped = f"round {r - 1} failed the stop rule; round {r - 2} is reported"
                active.remove(s)
                continue
            rr = one_round(run, chain, r, previous[s])
            if rr is None:
                active.remove(s)
                continue
            previous[s] = (rr.fp[f"dpo-{s}"], rr.rundir.model(s))
    for s in active:  # each ran round k: the rule decides whether round k is reported
        chain, last = chains[s], chains[s].trained[-1]
        chain.stopped = f"reached rounds.k = {rc.k}"
        if rc.stop and not decide(run, chain, last)["passed"]:
            chain.stopped += f"; round {last} failed the stop rule, round {last - 1} is reported"
    record = {
        "k": rc.k,
        "init": rc.init,
        "stop": rc.stop,
        "strategies": {s: c.record(rc.stop) for s, c in chains.items()},
    }
    write_json_atomic(record, run.rundir.rounds_record)
    for s, c in chains.items():
        log.info("rounds: %s reports round %d (%s)", s, c.accepted(rc.stop), c.stopped)
    return record
