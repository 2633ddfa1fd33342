"""The method as one recipe, top to bottom (METHOD.md steps 0-7, ARCHITECTURE.md "Data flow"):

    load -> sft -> sample -> debate -> judge -> pairs -> dpo -> evaluate -> report

Every step reads and writes one run directory (`RunDir`). A step is skipped when its
fingerprint (its config and its inputs' fingerprints) is unchanged, and a Ray Data step cut
off part way resumes from its part files (pipeline/runner.py). The engine-owning steps are
described by a `StageSpec` each; training and the report are called as plain functions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from anchor_service.compute import resolve_threads
from anchor_service.config import JudgeConfig, ModelSpec, RunConfig, dump_config
from anchor_service.core.keys import NOISE_GENERATOR, keyed_rng
from anchor_service.core.pairs import PromptResponses, build_pairs
from anchor_service.core.rubric import JUDGE_PROMPT_VERSION
from anchor_service.core.types import CONSISTENTLY_INCORRECT, Example
from anchor_service.demo.agreement import write_oracle_scores
from anchor_service.demo.oracle import is_oracle, oracle_applies
from anchor_service.pipeline.debate import DebateStage
from anchor_service.pipeline.judge import JudgeStage
from anchor_service.pipeline.runner import StageSpec, run_stage
from anchor_service.pipeline.sample import SampleStage
from anchor_service.rundir import (
    RunDir,
    fingerprint,
    write_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from anchor_service.schema import (
    SCORE_KEYS,
    debate_input,
    judge_input,
    pairs_frame,
    prompt_categories,
    responses_by_prompt,
    sample_input,
)

log = logging.getLogger(__name__)

# The stages a job can stop after (each includes everything before it).
STAGES = ("sft", "pairs", "dpo", "evaluate", "report")


@dataclass(frozen=True)
class RunData:
    """The run's examples (METHOD.md step 0), loaded once."""

    train: list[Example]
    test: list[Example]
    validation: list[Example] = field(default_factory=list)
    """Held out of `train` for the rounds' stop rule (empty unless rounds.k > 1 with stop)."""

    @property
    def by_id(self) -> dict[str, Example]:
        return {ex.prompt_id: ex for ex in self.train + self.test + self.validation}


def load_data(cfg: RunConfig) -> RunData:
    """The train and test examples of the config's data source (seeded selection included)."""
    from anchor_service.data.load import load_examples

    train = list(load_examples(cfg.data, cfg.data.train_split, cfg.run_seed).examples)
    test = list(load_examples(cfg.data, cfg.data.test_split, cfg.run_seed).examples)
    if not train:
        raise ValueError(f"no training examples from data source '{cfg.data.source}'")
    validation: list[Example] = []
    if cfg.rounds.k > 1 and cfg.rounds.stop:
        train, validation = carve_validation(cfg, train)
    log.info(
        "data: %d train, %d test, %d validation examples", len(train), len(test), len(validation)
    )
    return RunData(train, test, validation)


def carve_validation(cfg: RunConfig, train: list[Example]) -> tuple[list[Example], list[Example]]:
    """`rounds.validation_size` training examples held out as the stop rule's validation split:
    a seeded choice (the data subset's seed), the rest stays the training split in its order."""
    n = cfg.rounds.validation_size
    if n >= len(train):
        raise ValueError(
            f"rounds.validation_size = {n} but the training split has {len(train)} examples; "
            "hold out fewer (the rest trains), or set rounds.stop=false"
        )
    seed = cfg.data.selection_seed if cfg.data.selection_seed is not None else cfg.run_seed
    held = set(keyed_rng((seed, "rounds-validation")).sample(range(len(train)), n))
    return (
        [ex for i, ex in enumerate(train) if i not in held],
        [ex for i, ex in enumerate(train) if i in held],
    )


class MethodRun:
    """One run of the method: the config, the data, the run directory, the fingerprints."""

    def __init__(self, cfg: RunConfig, out: str | Path):
        if cfg.pipeline.placement == "serve":
            cfg = with_serve_placement(cfg)
        self.cfg = cfg
        self.rundir = RunDir(out)
        self.data = load_data(cfg)
        self.by_id = self.data.by_id
        self.fp: dict[str, str] = {
            "train": fingerprint([ex.to_dict() for ex in self.data.train]),
            "test": fingerprint([ex.to_dict() for ex in self.data.test]),
        }
        if self.data.validation:
            self.fp["validation"] = fingerprint([ex.to_dict() for ex in self.data.validation])
        self.strategies: list[str] = list(cfg.pairs.strategies)
        self.timings: dict[str, float] = {}
        self.sft_dir = self.rundir.model("sft")
        # A round r >= 2 (recipe/rounds.py) is a copy of this run with these set: step 1's
        # policy (label, spec, fingerprint) when it is not sft, the adapter its DPO continues
        # (fingerprint, directory; None: a fresh one), and its stages' prefix in timings.
        self.round_policy: tuple[str, ModelSpec, str] | None = None
        self.round_init: tuple[str, str] | None = None
        self.stage_prefix = ""

    def run(self, until: str = "report") -> dict[str, Any]:
        """Run every step up to and including `until` (one of STAGES); done steps are skipped."""
        from anchor_service.cluster import ensure_ray

        if until not in STAGES:
            raise ValueError(f"unknown stage '{until}'; stages are {', '.join(STAGES)}")
        last = STAGES.index(until)
        t_start = time.perf_counter()
        write_atomic(self.rundir.config, dump_config(self.cfg))
        ensure_ray(self.cfg.cluster)
        self.sft()
        if last < STAGES.index("pairs"):
            return {}
        samples = self.sample()
        debates = self.debate(samples)
        scores = self.judge(samples, debates)
        stats = self.pairs(samples, scores, debates)
        if last < STAGES.index("dpo"):
            return {}
        trained = [s for s in self.cfg.pairs.strategies if self.dpo(s, stats[s])]
        if last < STAGES.index("evaluate"):
            return {}
        if self.cfg.evaluation.enabled:
            self.evaluate(self.eval_models(trained))
        if self.cfg.rounds.k > 1:
            from anchor_service.recipe.rounds import run_rounds

            run_rounds(self, trained)
        self.sanity()
        summary = self.report()
        self.timings["total"] = round(time.perf_counter() - t_start, 1)
        write_json_atomic(self.timings, self.rundir.timings)
        return summary

    # ------------------------------------------------------------------ the steps
    def sft(self) -> None:
        """Step 0: the base policy fine-tuned on the answer prompt (models/sft/)."""
        cfg = self.cfg
        fp = fingerprint(
            "sft", cfg.policy.name, cfg.sft.result_dump(), self.fp["train"], cfg.run_seed
        )
        self.fp["sft"] = fp if cfg.sft.enabled else fingerprint("base", cfg.policy.model_dump())
        out = self.rundir.model("sft")
        if not cfg.sft.enabled or (self.rundir.is_done("sft", fp) and out.is_dir()):
            return
        from anchor_service.engines.registry import resolve_model
        from anchor_service.training.faults import kill_callbacks
        from anchor_service.training.sft import train_sft

        t0 = time.perf_counter()
        train_sft(
            self.data.train,
            resolve_model(cfg.policy.name),
            out,
            cfg.sft,
            run_seed=cfg.run_seed,
            storage_path=self.rundir.train_storage,
            **self._tracking(),
            callbacks=kill_callbacks("sft"),  # a test hook, inert unless set (faults.py)
        )
        self.rundir.mark_done("sft", fp)
        self._timed("sft", t0)

    def sample(self) -> pd.DataFrame:
        """Step 1: N sampled responses per training prompt (samples.parquet)."""
        cfg = self.cfg
        s = cfg.sampling
        label, policy, policy_fp = self.sampling_policy()
        fp_parts = (
            "sample",
            policy_fp,
            s.model_dump(),
            self.fp["train"],
            cfg.run_seed,
            NOISE_GENERATOR,
        )
        params = {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens}
        rows = sample_input(self.data.train, s.n)
        return self._run(self._sample_stage("sample", label, policy, rows, params, fp_parts))

    def debate(self, samples: pd.DataFrame) -> pd.DataFrame:
        """Step 2: the debater on the consistently-incorrect prompts (debates.parquet)."""
        cfg = self.cfg
        spec = cfg.debater or cfg.policy
        cats = prompt_categories(samples)
        todo = [ex for ex in self.data.train if cats.get(ex.prompt_id) == CONSISTENTLY_INCORRECT]
        args = {
            "spec": spec.model_dump(),
            "run_seed": cfg.run_seed,
            "max_retries": cfg.debate.max_retries,
            "temperature": cfg.debate.temperature,
            "max_tokens": cfg.debate.max_tokens or cfg.sampling.max_tokens,
            "torch_threads": self._threads("debate", spec),
            "prefill_answer": cfg.debate.prefill_answer,
        }
        fp_parts = ("debate", self.fp["sample"], spec.model_dump(), cfg.debate.model_dump())
        stage = StageSpec(
            name="debate",
            rows=debate_input(todo),
            keys=("prompt_id",),
            stage_cls=DebateStage,
            args=args,
            resources=cfg.pipeline.debate,
            out_path=self.rundir.debates,
            fingerprint_parts=fp_parts,
            model=spec,
            out_keys=("prompt_id", "attempt"),
            progress=cfg.pipeline.progress,
        )
        return self._run(stage)

    def judge(self, samples: pd.DataFrame, debates: pd.DataFrame) -> pd.DataFrame:
        """Step 3: the judge scores the samples and the accepted debates (scores.parquet)."""
        accepted = debates[debates["accepted"].astype(bool)] if len(debates) else debates
        rows = pd.concat(
            [
                judge_input(samples, self.by_id, "sample"),
                judge_input(accepted, self.by_id, "debate") if len(accepted) else None,
            ],
            ignore_index=True,
        )
        upstream = [self.fp["sample"], self.fp["debate"]]
        scores = self._run(
            self._judge_stage("judge", self.cfg.judge, rows, self.rundir.scores, upstream)
        )
        if self.oracle_compares(self.cfg.judge):
            write_oracle_scores(rows, self.rundir.oracle_scores())
        return scores

    def pairs(
        self, samples: pd.DataFrame, scores: pd.DataFrame, debates: pd.DataFrame
    ) -> dict[str, dict]:
        """Steps 4-5: categories, then one pair per prompt for each strategy (pairs-*, stats-*)."""
        from anchor_service.core.prompts import explain_prompt
        from anchor_service.engines.chat import render_chat

        cfg = self.cfg
        joined = responses_by_prompt(samples, scores, debates)
        prompts = []
        for ex in self.data.train:
            resp, deb = joined[ex.prompt_id]
            text = render_chat(self.sft_model(), explain_prompt(ex.question, list(ex.options)))
            prompts.append(PromptResponses(ex.prompt_id, text, resp, deb))
        all_stats = {}
        for strategy in self.strategies:
            pairs, stats = build_pairs(
                strategy,
                prompts,
                run_seed=cfg.run_seed,
                min_pairs=cfg.pairs.min_pairs,
                variable_rejected=cfg.pairs.variable_rejected,
                incorrect_rejected=cfg.pairs.incorrect_rejected,
            )
            write_parquet_atomic(pairs_frame(pairs), self.rundir.pairs(strategy))
            write_json_atomic(stats, self.rundir.stats(strategy))
            self.fp[f"pairs-{strategy}"] = self.pairs_fingerprint(strategy)
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

    def pairs_fingerprint(self, strategy: str) -> str:
        """What `strategy`'s pairs depend on: the judged responses and the pair rules, not
        which other strategies the run builds."""
        return fingerprint("pairs", strategy, self.fp["judge"], self.cfg.pairs.result_dump())

    def dpo(self, strategy: str, stats: dict) -> bool:
        """Step 6: the strategy's DPO adapter on SFT (models/<strategy>/); False when skipped."""
        cfg = self.cfg
        if stats["dpo_skipped"]:
            return False
        init = self.round_init
        fp_parts: list[Any] = [
            "dpo",
            strategy,
            self.fp[f"pairs-{strategy}"],
            cfg.dpo.result_dump(),
            self.fp["sft"],
        ]
        if init is not None:  # the continued adapter, by its fingerprint (not its path)
            fp_parts.append(init[0])
        fp = fingerprint(*fp_parts)
        self.fp[f"dpo-{strategy}"] = fp
        out = self.rundir.model(strategy)
        if self.rundir.is_done(f"dpo-{strategy}", fp) and out.is_dir():
            return True
        from anchor_service.engines.registry import resolve_model
        from anchor_service.training.dpo import train_dpo
        from anchor_service.training.faults import kill_callbacks

        pairs = pd.read_parquet(self.rundir.pairs(strategy)).to_dict("records")
        t0 = time.perf_counter()
        train_dpo(
            pairs,
            Path(self.sft_model().name) if cfg.sft.enabled else resolve_model(cfg.policy.name),
            out,
            cfg.dpo,
            run_seed=cfg.run_seed,
            storage_path=self.rundir.train_storage,
            **self._tracking(),
            init_adapter=None if init is None else Path(init[1]),
            callbacks=kill_callbacks(f"dpo-{strategy}"),
        )
        self.rundir.mark_done(f"dpo-{strategy}", fp)
        self._timed(f"dpo-{strategy}", t0)
        return True

    def _tracking(self) -> dict[str, Any]:
        """The trainers' tracking arguments: the section, and its files' directory."""
        t = self.cfg.tracking
        return {"tracking": t, "tracking_dir": Path(t.dir) if t.dir else self.rundir.tracking}

    def evaluate(self, models: dict[str, ModelSpec], split: str = "test") -> None:
        """Step 7: greedy test answers of every model, scored by the evaluation judge (eval/);
        `split="validation"`: the same on the rounds' validation split (validation/)."""
        cfg = self.cfg
        examples = self.data.test if split == "test" else self.data.validation
        prefix, answers_path, scores_path = (
            ("eval", self.rundir.eval_answers, self.rundir.eval_scores)
            if split == "test"
            else ("validation", self.rundir.validation_answers, self.rundir.validation_scores)
        )
        judge = cfg.eval_judge or cfg.judge
        max_tokens = cfg.evaluation.max_tokens or cfg.sampling.max_tokens
        params = {"temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens}
        for name, spec in models.items():
            upstream = {
                "base": fingerprint(cfg.policy.model_dump()),
                "sft": self.fp["sft"],
            }.get(name) or self.fp.get(f"dpo-{name}")
            fp_parts = (
                f"{prefix}-answers",
                name,
                upstream,
                self.fp[split],
                max_tokens,
                cfg.run_seed,
            )
            answers = self._run(
                self._sample_stage(
                    f"{prefix}-answers-{name}",
                    name,
                    spec,
                    sample_input(examples, 1),
                    params,
                    fp_parts,
                    out_path=answers_path(name),
                )
            )
            rows = judge_input(answers, self.by_id, "sample")
            upstream = [self.fp[f"{prefix}-answers-{name}"]]
            out = scores_path(name)
            self._run(self._judge_stage(f"{prefix}-scores-{name}", judge, rows, out, upstream))
            if split == "test" and self.oracle_compares(judge):
                write_oracle_scores(rows, self.rundir.oracle_scores(name))

    def sanity(self) -> dict[str, Any]:
        """Step 7: the judges' sanity figures on the check set (sanity/sanity.json)."""
        from anchor_service.pipeline.sanity import sanity_rows
        from anchor_service.schema import judgements_of
        from anchor_service.scoring.sanity import sanity_figure

        cfg = self.cfg
        out = {}
        judges = {"alignment": cfg.judge, "evaluation": cfg.eval_judge or cfg.judge}
        for role, judge in judges.items():
            if role == "evaluation" and judge == judges["alignment"]:
                out[role] = out["alignment"]  # the same judge: measured once
                continue
            path = self.rundir.sanity_scores(role)
            rows = sanity_rows(judge)
            scores = self._run(self._judge_stage(f"sanity-{role}", judge, rows, path, ["checkset"]))
            out[role] = sanity_figure(judgements_of(scores))
        write_json_atomic(out, self.rundir.sanity)
        return out

    def report(self) -> dict[str, Any]:
        """summary.json, report.md, report.html and the figures, from the run files alone."""
        from anchor_service.report.summary import write_summary

        return write_summary(self.rundir.root)

    # ------------------------------------------------------------------ the models
    def sampling_policy(self) -> tuple[str, ModelSpec, str]:
        """Step 1's policy: its label in samples.parquet, its spec, its fingerprint."""
        return self.round_policy or ("sft", self.sft_model(), self.fp["sft"])

    def sft_model(self) -> ModelSpec:
        """The policy after step 0 (the base policy when SFT is off)."""
        if not self.cfg.sft.enabled:
            return self.cfg.policy
        return self.cfg.policy.model_copy(update={"name": str(self.sft_dir)})

    def strategy_model(self, strategy: str) -> ModelSpec:
        return self.sft_model().model_copy(update={"adapter": str(self.rundir.model(strategy))})

    def eval_models(self, trained: list[str]) -> dict[str, ModelSpec]:
        models = {"base": self.cfg.policy}
        if self.cfg.sft.enabled:
            models["sft"] = self.sft_model()
        for s in trained:
            models[s] = self.strategy_model(s)
        return models

    def oracle_compares(self, judge: JudgeConfig) -> bool:
        """Whether the oracle should also score what `judge` scored (judge_agreement)."""
        return not is_oracle(judge) and oracle_applies(self.data.train + self.data.test)

    # ------------------------------------------------------------------ the stage values
    def _sample_stage(
        self,
        name: str,
        label: str,
        spec: ModelSpec,
        rows: pd.DataFrame,
        params: dict[str, Any],
        fp_parts: tuple,
        out_path: Path | None = None,
    ) -> StageSpec:
        """A SampleStage run of `spec` (labelled `label` in the files) with sampling `params`."""
        args = {
            "spec": spec.model_dump(),
            "model_label": label,
            "run_seed": self.cfg.run_seed,
            **params,
            "torch_threads": self._threads("sample", spec),
        }
        return StageSpec(
            name=name,
            rows=rows,
            keys=("prompt_id", "sample_idx"),
            stage_cls=SampleStage,
            args=args,
            resources=self.cfg.pipeline.sample,
            out_path=out_path or self.rundir.samples,
            fingerprint_parts=fp_parts,
            model=spec,
            progress=self.cfg.pipeline.progress,
        )

    def _judge_stage(
        self, name: str, judge: JudgeConfig, rows: pd.DataFrame, out_path: Path, upstream: list
    ) -> StageSpec:
        """A JudgeStage run of `judge` over judge-stage `rows`."""
        return StageSpec(
            name=name,
            rows=rows,
            keys=tuple(SCORE_KEYS),
            stage_cls=JudgeStage,
            args={
                "judge_cfg": judge.model_dump(),
                "torch_threads": self._threads("judge", judge.model),
            },
            resources=self.cfg.pipeline.judge,
            out_path=out_path,
            fingerprint_parts=(name, judge.model_dump(), upstream, JUDGE_PROMPT_VERSION),
            model=None if is_oracle(judge) else judge.model,
            progress=self.cfg.pipeline.progress,
        )

    def _run(self, stage: StageSpec) -> pd.DataFrame:
        """Run one Ray Data stage (skipped when done), recording its fingerprint and time."""
        self.fp[stage.name] = stage.fingerprint
        t0 = time.perf_counter()
        df = run_stage(self.rundir, stage)
        self._timed(stage.name, t0)
        return df

    def _threads(self, which: str, spec: ModelSpec | None = None) -> int | None:
        """The torch threads of the stage's actors (`compute.resolve_threads`)."""
        res = getattr(self.cfg.pipeline, which)
        return resolve_threads(res.torch_threads, spec, res.num_cpus)

    def _timed(self, name: str, t0: float) -> None:
        name = self.stage_prefix + name
        self.timings[name] = round(time.perf_counter() - t0, 1)
        log.info("stage %s: %.1fs", name, self.timings[name])


def with_serve_placement(cfg: RunConfig) -> RunConfig:
    """`placement: serve`: the alignment judge and the debater (the base policy) are the
    running Serve application's judge and policy deployments, reached through ServeEngine,
    so one set of actors answers users and builds pairs. Sampling stays inline: it needs the
    SFT model, which only this run has. Start the service first (`anchor-align serve`)."""
    from anchor_service.engines.serve import serve_model

    app = cfg.serve.app_name
    judge = cfg.judge.model_copy(update={"model": serve_model(app, "judge")})
    return cfg.model_copy(update={"judge": judge, "debater": serve_model(app, "policy")})
