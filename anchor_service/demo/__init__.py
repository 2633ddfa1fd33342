"""The built-in demo task in one package, across two layers (docs/ARCHITECTURE.md):

- `task`: the question generator and scripted responses (the data layer; `data.load` reads it);
- `oracle`: the judge that checks explanations against the task's facts, and `is_oracle`,
  the one rule that tells the oracle from an LLM judge (the scoring layer);
- `checkset`: the oracle's sanity check set (scoring layer);
- `agreement`: the oracle's scores of what an LLM judge scored, for `judge_agreement`
  (scoring layer).
"""
