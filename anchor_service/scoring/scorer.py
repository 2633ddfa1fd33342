"""Pick the judge named by a JudgeConfig: an LLM judge over an engine, or the demo oracle."""

from __future__ import annotations

from typing import Protocol

from anchor_service.config import JudgeConfig
from anchor_service.core.types import Judgement
from anchor_service.scoring.item import JudgeItem


class Scorer(Protocol):
    """Anything that turns judge items into judgements (LLM judge or oracle)."""

    judge_id: str

    def score(self, items: list[JudgeItem]) -> list[Judgement]: ...


def make_judge(cfg: JudgeConfig, *, continuous_batching: bool = False) -> Scorer:
    """The judge of a config: `oracle` mode needs no model; other modes load the engine
    (`continuous_batching`: as `make_engine`'s)."""
    from anchor_service.demo.oracle import OracleJudge, is_oracle

    if is_oracle(cfg):
        return OracleJudge()
    from anchor_service.engines.factory import make_engine
    from anchor_service.scoring.judge import Judge

    engine = make_engine(cfg.model, continuous_batching=continuous_batching)
    return Judge(
        engine,
        mode=cfg.mode,
        judge_id=engine.model_id,
        max_tokens=cfg.max_tokens,
        delimiter_key=cfg.delimiter_key,
    )
