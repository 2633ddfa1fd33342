"""Judging, explaining and debating on top of an Engine (used by the CLI, Serve and the pipeline)."""
