"""Step 1 (and evaluation answers): N responses per prompt with the explain prompt."""

from __future__ import annotations

from typing import Any

import pandas as pd

from anchor_service.core.parsing import parse_response
from anchor_service.core.prompts import explain_prompt
from anchor_service.core.types import LETTERS
from anchor_service.engines.base import GenRequest, SamplingParams
from anchor_service.pipeline.actor import load_engine
from anchor_service.schema import SAMPLE_COLUMNS, SAMPLE_INPUT


class SampleStage:
    """Ray Data callable: rows (prompt_id, sample_idx, question, options, gold) -> samples rows."""

    COLUMNS = SAMPLE_COLUMNS
    INPUT_COLUMNS = SAMPLE_INPUT

    def __init__(
        self,
        spec: dict[str, Any],
        model_label: str,
        run_seed: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        torch_threads: int | None = None,
    ):
        self.engine = load_engine(spec, torch_threads)
        self.model_label = model_label
        self.run_seed = run_seed
        self.params = SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        requests = [
            GenRequest(
                prompt=explain_prompt(r.question, list(r.options)),
                key=(self.run_seed, r.prompt_id, int(r.sample_idx)),
            )
            for r in batch.itertuples(index=False)
        ]
        completions = self.engine.generate(requests, self.params)
        rows = []
        for r, comp in zip(batch.itertuples(index=False), completions, strict=True):
            parsed = parse_response(comp.text, list(r.options))
            rows.append(
                {
                    "prompt_id": r.prompt_id,
                    "sample_idx": int(r.sample_idx),
                    "model": self.model_label,
                    "text": comp.text,
                    "answer": parsed.answer,
                    "explanation": parsed.explanation,
                    "correct": parsed.answer is not None and parsed.answer == LETTERS[int(r.gold)],
                    "parse_status": parsed.parse_status,
                }
            )
        return pd.DataFrame(rows, columns=self.COLUMNS)
