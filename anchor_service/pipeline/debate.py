"""Step 2: the debater explains the gold answer of consistently-incorrect prompts."""

from __future__ import annotations

from typing import Any

import pandas as pd

from anchor_service.core.types import Example
from anchor_service.pipeline.actor import load_engine
from anchor_service.schema import DEBATE_COLUMNS, DEBATE_INPUT
from anchor_service.scoring.debate import debate


class DebateStage:
    """Ray Data callable: rows (prompt_id, question, options, gold) -> debates rows (attempts)."""

    COLUMNS = DEBATE_COLUMNS
    INPUT_COLUMNS = DEBATE_INPUT

    def __init__(
        self,
        spec: dict[str, Any],
        run_seed: int,
        max_retries: int,
        temperature: float,
        max_tokens: int,
        torch_threads: int | None = None,
        prefill_answer: bool = True,
    ):
        self.engine = load_engine(spec, torch_threads)
        self.run_seed = run_seed
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.prefill_answer = prefill_answer

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        examples = [
            Example(r.prompt_id, r.question, tuple(r.options), int(r.gold))
            for r in batch.itertuples(index=False)
        ]
        attempts = debate(
            self.engine,
            examples,
            run_seed=self.run_seed,
            max_retries=self.max_retries,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            prefill_answer=self.prefill_answer,
        )
        rows = [{c: getattr(a, c) for c in self.COLUMNS} for a in attempts]
        return pd.DataFrame(rows, columns=self.COLUMNS)
