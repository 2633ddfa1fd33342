"""The whole method, stage by stage, in one run directory (ARCHITECTURE.md "Data flow").

base -> sft -> samples -> debates -> scores -> pairs per strategy -> dpo per strategy ->
evaluation answers + scores -> summary. Each stage is skipped when its fingerprint (its
config and its inputs' fingerprints) is unchanged, and resumes from its part files when cut off.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pandas as pd

from anchor_service.config import JudgeConfig, ModelSpec, RunConfig, dump_config
from anchor_service.core.categorize import categorize
from anchor_service.core.keys import NOISE_GENERATOR
from anchor_service.core.pairs import Pair, PromptResponses, Response, build_pairs, sample_ref
from anchor_service.core.types import CATEGORIES, CONSISTENTLY_INCORRECT, Example
from anchor_service.pipeline.debate import DebateStage
from anchor_service.pipeline.judge import JudgeStage
from anchor_service.pipeline.oracle import is_oracle, oracle_applies, write_oracle_scores
from anchor_service.pipeline.runner import run_stage
from anchor_service.pipeline.sample import SampleStage
from anchor_service.rundir import (
    RunDir,
    fingerprint,
    write_atomic,
    write_json_atomic,
    write_parquet_atomic,
)

log = logging.getLogger(__name__)


def judge_rows(df: pd.DataFrame, by_id: dict[str, Example], source: str) -> pd.DataFrame:
    """Judge-stage input rows for responses in `df` (samples, debates or eval answers)."""
    idx_col = "sample_idx" if "sample_idx" in df.columns else "attempt"
    rows = []
    for r in df.itertuples(index=False):
        ex = by_id[r.prompt_id]
        rows.append(
            {
                "prompt_id": r.prompt_id,
                "source": source,
                "sample_idx": int(getattr(r, idx_col)),
                "question": ex.question,
                "options": list(ex.options),
                "answer": r.answer if isinstance(r.answer, str) else None,
                "explanation": r.explanation if isinstance(r.explanation, str) else "",
                "meta_json": json.dumps(ex.meta) if ex.meta is not None else None,
            }
        )
    return pd.DataFrame(rows)


def example_rows(examples: list[Example], n: int) -> pd.DataFrame:
    """Sample-stage input: one row per (prompt, sample_idx)."""
    return pd.DataFrame(
        [
            {
                "prompt_id": ex.prompt_id,
                "sample_idx": i,
                "question": ex.question,
                "options": list(ex.options),
                "gold": ex.gold,
            }
            for ex in examples
            for i in range(n)
        ]
    )


def prompt_categories(samples: pd.DataFrame) -> dict[str, str]:
    """prompt_id -> category from the parsed answers (unparseable counts as incorrect)."""
    return {
        pid: categorize([bool(c) for c in g.sort_values("sample_idx")["correct"]])
        for pid, g in samples.groupby("prompt_id", sort=False)
    }


def responses_by_prompt(
    samples: pd.DataFrame, scores: pd.DataFrame, debates: pd.DataFrame
) -> dict[str, tuple[list[Response], Response | None]]:
    """Join samples and accepted debates with their judgements, per prompt."""
    sc = {(r.prompt_id, r.source, int(r.sample_idx)): r for r in scores.itertuples(index=False)}
    out: dict[str, tuple[list[Response], Response | None]] = {}

    def make(r, source: str, idx: int, ref: str, correct: bool) -> Response:
        j = sc[(r.prompt_id, source, idx)]
        return Response(
            ref=ref,
            sample_idx=idx,
            text=r.text,
            answer=r.answer if isinstance(r.answer, str) else None,
            explanation=r.explanation if isinstance(r.explanation, str) else "",
            correct=correct,
            status=j.status,
            score=None if pd.isna(j.score) else int(j.score),
            score_expected=None if pd.isna(j.score_expected) else float(j.score_expected),
        )

    for pid, g in samples.groupby("prompt_id", sort=False):
        resp = [
            make(r, "sample", int(r.sample_idx), sample_ref(int(r.sample_idx)), bool(r.correct))
            for r in g.sort_values("sample_idx").itertuples(index=False)
        ]
        out[pid] = (resp, None)
    if len(debates):
        for r in debates[debates["accepted"]].itertuples(index=False):
            samples_of, _ = out[r.prompt_id]
            out[r.prompt_id] = (samples_of, make(r, "debate", int(r.attempt), "debate", True))
    return out


class MethodRun:
    """One run of the method: holds the config, the run directory and the stage fingerprints."""

    def __init__(self, cfg: RunConfig, out: str | Path):
        if cfg.pipeline.placement == "serve":
            cfg = with_serve_placement(cfg)
        self.cfg = cfg
        self.rundir = RunDir(out)
        self.fp: dict[str, str] = {}
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ helpers
    def _stage_res(self, which: str):
        return getattr(self.cfg.pipeline, which)

    def _threads(self, which: str, spec: ModelSpec | None = None) -> int | None:
        return self._stage_res(which).torch_threads or (spec.torch_threads if spec else None)

    def _timed(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.perf_counter() - t0, 1)
        log.info("stage %s: %.1fs", name, self.timings[name])

    def sft_spec(self) -> ModelSpec:
        if not self.cfg.sft.enabled:
            return self.cfg.policy
        return self.cfg.policy.model_copy(update={"name": str(self.rundir.model("sft"))})

    def strategy_spec(self, strategy: str) -> ModelSpec:
        return self.sft_spec().model_copy(update={"adapter": str(self.rundir.model(strategy))})

    # ------------------------------------------------------------------ stages
    def load_data(self) -> None:
        from anchor_service.data.load import load_examples

        cfg = self.cfg
        self.train_result = load_examples(cfg.data, cfg.data.train_split, cfg.run_seed)
        self.test_result = load_examples(cfg.data, cfg.data.test_split, cfg.run_seed)
        self.train = list(self.train_result.examples)
        self.test = list(self.test_result.examples)
        if not self.train:
            raise ValueError(f"no training examples from data source '{cfg.data.source}'")
        self.by_id = {ex.prompt_id: ex for ex in self.train + self.test}
        self.fp["train"] = fingerprint([ex.to_dict() for ex in self.train])
        self.fp["test"] = fingerprint([ex.to_dict() for ex in self.test])
        log.info("data: %d train, %d test examples", len(self.train), len(self.test))

    def stage_sft(self) -> None:
        cfg = self.cfg
        fp = fingerprint(
            "sft", cfg.policy.name, cfg.sft.result_dump(), self.fp["train"], cfg.run_seed
        )
        self.fp["sft"] = fp if cfg.sft.enabled else fingerprint("base", cfg.policy.model_dump())
        out = self.rundir.model("sft")
        if not cfg.sft.enabled or (self.rundir.is_done("sft", fp) and out.is_dir()):
            return
        from anchor_service.engines.registry import resolve_model
        from anchor_service.training.sft import train_sft

        t0 = time.perf_counter()
        train_sft(
            self.train,
            resolve_model(cfg.policy.name),
            out,
            cfg.sft,
            run_seed=cfg.run_seed,
            storage_path=self.rundir.train_storage,
        )
        self.rundir.mark_done("sft", fp)
        self._timed("sft", t0)

    def stage_sample(self) -> pd.DataFrame:
        cfg = self.cfg
        spec = self.sft_spec()
        fp = fingerprint(
            "sample",
            self.fp["sft"],
            cfg.sampling.model_dump(),
            self.fp["train"],
            cfg.run_seed,
            NOISE_GENERATOR,
        )
        self.fp["sample"] = fp
        t0 = time.perf_counter()
        res = cfg.pipeline.sample
        df = run_stage(
            self.rundir,
            "sample",
            fp,
            example_rows(self.train, cfg.sampling.n),
            ["prompt_id", "sample_idx"],
            SampleStage,
            dict(
                spec=spec.model_dump(),
                model_label="sft",
                run_seed=cfg.run_seed,
                temperature=cfg.sampling.temperature,
                top_p=cfg.sampling.top_p,
                max_tokens=cfg.sampling.max_tokens,
                torch_threads=self._threads("sample", spec),
            ),
            res,
            self.rundir.samples,
            progress=cfg.pipeline.progress,
        )
        self._timed("sample", t0)
        return df

    def stage_debate(self, samples: pd.DataFrame) -> pd.DataFrame:
        cfg = self.cfg
        spec = cfg.debater or cfg.policy
        cats = prompt_categories(samples)
        todo = [ex for ex in self.train if cats.get(ex.prompt_id) == CONSISTENTLY_INCORRECT]
        fp = fingerprint("debate", self.fp["sample"], spec.model_dump(), cfg.debate.model_dump())
        self.fp["debate"] = fp
        rows = pd.DataFrame(
            [
                {
                    "prompt_id": ex.prompt_id,
                    "question": ex.question,
                    "options": list(ex.options),
                    "gold": ex.gold,
                }
                for ex in todo
            ],
            columns=["prompt_id", "question", "options", "gold"],
        )
        t0 = time.perf_counter()
        df = run_stage(
            self.rundir,
            "debate",
            fp,
            rows,
            ["prompt_id"],
            DebateStage,
            dict(
                spec=spec.model_dump(),
                run_seed=cfg.run_seed,
                max_retries=cfg.debate.max_retries,
                temperature=cfg.debate.temperature,
                max_tokens=cfg.debate.max_tokens or cfg.sampling.max_tokens,
                torch_threads=self._threads("debate", spec),
                prefill_answer=cfg.debate.prefill_answer,
            ),
            cfg.pipeline.debate,
            self.rundir.debates,
            progress=cfg.pipeline.progress,
            out_keys=["prompt_id", "attempt"],
        )
        self._timed("debate", t0)
        return df

    def run_judge(
        self,
        stage: str,
        judge: JudgeConfig,
        rows: pd.DataFrame,
        out_path: Path,
        upstream: list[str],
    ) -> pd.DataFrame:
        fp = fingerprint(stage, judge.model_dump(), upstream)
        self.fp[stage] = fp
        t0 = time.perf_counter()
        df = run_stage(
            self.rundir,
            stage,
            fp,
            rows,
            ["prompt_id", "source", "sample_idx"],
            JudgeStage,
            dict(judge_cfg=judge.model_dump(), torch_threads=self._threads("judge", judge.model)),
            self.cfg.pipeline.judge,
            out_path,
            progress=self.cfg.pipeline.progress,
        )
        self._timed(stage, t0)
        return df

    def judge_input(self, samples: pd.DataFrame, debates: pd.DataFrame) -> pd.DataFrame:
        """Judge-stage rows of the samples and the accepted debates."""
        accepted = debates[debates["accepted"].astype(bool)] if len(debates) else debates
        return pd.concat(
            [
                judge_rows(samples, self.by_id, "sample"),
                judge_rows(accepted, self.by_id, "debate") if len(accepted) else None,
            ],
            ignore_index=True,
        )

    def stage_judge(self, samples: pd.DataFrame, debates: pd.DataFrame) -> pd.DataFrame:
        rows = self.judge_input(samples, debates)
        scores = self.run_judge(
            "judge",
            self.cfg.judge,
            rows,
            self.rundir.scores,
            [self.fp["sample"], self.fp["debate"]],
        )
        if self.oracle_compares(self.cfg.judge):
            write_oracle_scores(rows, self.rundir.oracle_scores())
        return scores

    def oracle_compares(self, judge: JudgeConfig) -> bool:
        """Whether the oracle should also score what `judge` scored (judge_agreement)."""
        return not is_oracle(judge) and oracle_applies(self.train + self.test)

    def stage_pairs(
        self, samples: pd.DataFrame, scores: pd.DataFrame, debates: pd.DataFrame
    ) -> dict[str, dict]:
        from anchor_service.core.prompts import explain_prompt
        from anchor_service.engines.chat import render_chat

        cfg = self.cfg
        joined = responses_by_prompt(samples, scores, debates)
        prompts = []
        for ex in self.train:
            resp, deb = joined[ex.prompt_id]
            text = render_chat(self.sft_spec(), explain_prompt(ex.question, list(ex.options)))
            prompts.append(PromptResponses(ex.prompt_id, text, resp, deb))
        all_stats = {}
        for strategy in cfg.pairs.strategies:
            pairs, stats = build_pairs(
                strategy,
                prompts,
                run_seed=cfg.run_seed,
                min_pairs=cfg.pairs.min_pairs,
                variable_rejected=cfg.pairs.variable_rejected,
                incorrect_rejected=cfg.pairs.incorrect_rejected,
            )
            df = pd.DataFrame([asdict(p) for p in pairs])
            if df.empty:
                df = pd.DataFrame(columns=[f.name for f in fields(Pair)])
            write_parquet_atomic(df, self.rundir.pairs(strategy))
            write_json_atomic(stats, self.rundir.stats(strategy))
            self.fp[f"pairs-{strategy}"] = fingerprint(
                "pairs", strategy, self.fp["judge"], cfg.pairs.model_dump()
            )
            all_stats[strategy] = stats
            log.info(
                "pairs %s: %d pairs %s, lambda %s%s",
                strategy,
                sum(stats["pairs"].values()),
                stats["pairs"],
                stats["lambda"],
                " (below min_pairs: DPO skipped)" if stats["dpo_skipped"] else "",
            )
        return all_stats

    def stage_dpo(self, strategy: str, stats: dict) -> bool:
        """Train the strategy's DPO adapter; False when skipped for too few pairs."""
        cfg = self.cfg
        if stats["dpo_skipped"]:
            return False
        fp = fingerprint(
            "dpo", strategy, self.fp[f"pairs-{strategy}"], cfg.dpo.result_dump(), self.fp["sft"]
        )
        self.fp[f"dpo-{strategy}"] = fp
        out = self.rundir.model(strategy)
        if self.rundir.is_done(f"dpo-{strategy}", fp) and out.is_dir():
            return True
        from anchor_service.training.dpo import train_dpo

        pairs = pd.read_parquet(self.rundir.pairs(strategy)).to_dict("records")
        t0 = time.perf_counter()
        train_dpo(
            pairs,
            Path(self.sft_spec().name) if cfg.sft.enabled else _resolve(cfg.policy.name),
            out,
            cfg.dpo,
            run_seed=cfg.run_seed,
            storage_path=self.rundir.train_storage,
        )
        self.rundir.mark_done(f"dpo-{strategy}", fp)
        self._timed(f"dpo-{strategy}", t0)
        return True

    def eval_models(self, trained: list[str]) -> dict[str, ModelSpec]:
        models = {"base": self.cfg.policy}
        if self.cfg.sft.enabled:
            models["sft"] = self.sft_spec()
        for s in trained:
            models[s] = self.strategy_spec(s)
        return models

    def stage_evaluate(self, models: dict[str, ModelSpec]) -> None:
        cfg = self.cfg
        judge = cfg.eval_judge or cfg.judge
        max_tokens = cfg.evaluation.max_tokens or cfg.sampling.max_tokens
        for name, spec in models.items():
            upstream = {
                "base": fingerprint(cfg.policy.model_dump()),
                "sft": self.fp["sft"],
            }.get(name) or self.fp.get(f"dpo-{name}")
            fp = fingerprint(
                "eval-answers", name, upstream, self.fp["test"], max_tokens, cfg.run_seed
            )
            t0 = time.perf_counter()
            answers = run_stage(
                self.rundir,
                f"eval-answers-{name}",
                fp,
                example_rows(self.test, 1),
                ["prompt_id", "sample_idx"],
                SampleStage,
                dict(
                    spec=spec.model_dump(),
                    model_label=name,
                    run_seed=cfg.run_seed,
                    temperature=0.0,
                    top_p=1.0,
                    max_tokens=max_tokens,
                    torch_threads=self._threads("sample", spec),
                ),
                cfg.pipeline.sample,
                self.rundir.eval_answers(name),
                progress=cfg.pipeline.progress,
            )
            self._timed(f"eval-answers-{name}", t0)
            rows = judge_rows(answers, self.by_id, "sample")
            self.run_judge(f"eval-scores-{name}", judge, rows, self.rundir.eval_scores(name), [fp])
            if self.oracle_compares(judge):
                write_oracle_scores(rows, self.rundir.oracle_scores(name))

    def stage_sanity(self) -> dict[str, Any]:
        """The judges' sanity figures (METHOD.md step 7) on the shipped check set."""
        from anchor_service.pipeline.sanity import judgements_of, sanity_rows
        from anchor_service.scoring.sanity import sanity_figure

        cfg = self.cfg
        out = {}
        judges = {"alignment": cfg.judge, "evaluation": cfg.eval_judge or cfg.judge}
        for role, judge in judges.items():
            if role == "evaluation" and judge == judges["alignment"]:
                out[role] = out["alignment"]  # the same judge: measured once
                continue
            path = self.rundir.root / "sanity" / f"scores-{role}.parquet"
            scores = self.run_judge(f"sanity-{role}", judge, sanity_rows(judge), path, ["checkset"])
            out[role] = sanity_figure(judgements_of(scores))
        write_json_atomic(out, self.rundir.root / "sanity" / "sanity.json")
        return out

    # ------------------------------------------------------------------ the whole method
    def run(self, until: str = "report") -> dict[str, Any]:
        """Run every stage up to and including `until` (one of STAGES); done stages are skipped."""
        from anchor_service.cluster import ensure_ray

        if until not in STAGES:
            raise ValueError(f"unknown stage '{until}'; stages are {', '.join(STAGES)}")
        last = STAGES.index(until)
        t_start = time.perf_counter()
        write_atomic(self.rundir.config, dump_config(self.cfg))
        ensure_ray(self.cfg.cluster)
        self.load_data()
        self.stage_sft()
        if last < STAGES.index("pairs"):
            return {}
        samples = self.stage_sample()
        debates = self.stage_debate(samples)
        scores = self.stage_judge(samples, debates)
        stats = self.stage_pairs(samples, scores, debates)
        if last < STAGES.index("dpo"):
            return {}
        trained = [s for s in self.cfg.pairs.strategies if self.stage_dpo(s, stats[s])]
        if last < STAGES.index("evaluate"):
            return {}
        if self.cfg.evaluation.enabled:
            self.stage_evaluate(self.eval_models(trained))
        self.stage_sanity()
        from anchor_service.report.summary import write_summary

        summary = write_summary(self.rundir.root)
        self.timings["total"] = round(time.perf_counter() - t_start, 1)
        write_json_atomic(self.timings, self.rundir.root / "state" / "timings.json")
        return summary


# The stages a job can stop after (each includes everything before it).
STAGES = ("sft", "pairs", "dpo", "evaluate", "report")


def with_serve_placement(cfg: RunConfig) -> RunConfig:
    """`placement: serve`: the alignment judge and the debater (the base policy) are the
    running Serve application's judge and policy deployments, reached through ServeEngine,
    so one set of actors answers users and builds pairs. Sampling stays inline: it needs the
    SFT model, which only this run has. Start the service first (`anchor-align serve`)."""
    from anchor_service.engines.serve import serve_model

    app = cfg.serve.app_name
    judge = cfg.judge.model_copy(update={"model": serve_model(app, "judge")})
    return cfg.model_copy(update={"judge": judge, "debater": serve_model(app, "policy")})


def _resolve(name: str) -> Path:
    from anchor_service.engines.registry import resolve_model

    return resolve_model(name)


def categories_of(samples: pd.DataFrame) -> dict[str, int]:
    counts = dict.fromkeys(CATEGORIES, 0)
    for c in prompt_categories(samples).values():
        counts[c] += 1
    return counts
