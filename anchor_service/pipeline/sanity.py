"""The judges' sanity figures (METHOD.md step 7) computed through the same judge stage."""

from __future__ import annotations

import json

import pandas as pd

from anchor_service.config import JudgeConfig
from anchor_service.scoring.item import JudgeItem


def checkset_pairs(judge: JudgeConfig) -> list[tuple[JudgeItem, JudgeItem]]:
    """The shipped check set; for the oracle, generated demo pairs (it only knows the demo)."""
    from anchor_service.demo.oracle import is_oracle

    if is_oracle(judge):
        from anchor_service.demo.checkset import oracle_check_pairs

        return oracle_check_pairs()
    from anchor_service.scoring.sanity import load_checkset

    return load_checkset()


def sanity_rows(judge: JudgeConfig) -> pd.DataFrame:
    """Judge-stage rows: prompt `checkset/<k>`, sample_idx 0 = sound, 1 = nonsensical."""
    rows = []
    for k, pair in enumerate(checkset_pairs(judge)):
        for idx, item in enumerate(pair):
            rows.append(
                {
                    "prompt_id": f"checkset/{k:02d}",
                    "source": "sample",
                    "sample_idx": idx,
                    "question": item.question,
                    "options": list(item.options),
                    "answer": item.answer,
                    "explanation": item.explanation,
                    "meta_json": json.dumps(item.meta) if item.meta is not None else None,
                }
            )
    return pd.DataFrame(rows)
