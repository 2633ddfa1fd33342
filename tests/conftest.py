"""Shared fixtures: the embedded model, a random tiny model, the trained tiny test model.

Slow tests (`@pytest.mark.slow`, the real embedded model) run only with `--run-slow` or
`ANCHOR_RUN_SLOW=1`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run tests marked slow (real embedded model; minutes on 2 cores)",
    )


def _run_slow(config: pytest.Config) -> bool:
    return bool(config.getoption("--run-slow")) or os.environ.get("ANCHOR_RUN_SLOW") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _run_slow(config):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow or ANCHOR_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct, converted once into the anchor cache."""
    from anchor_service.engines.registry import EMBEDDED_MODEL, resolve_model

    return resolve_model(EMBEDDED_MODEL)


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-initialised Llama (hidden 64, 2 layers, fp32) with the embedded tokenizer."""
    from tiny_model import build_random_model

    return build_random_model(tmp_path_factory.mktemp("random-model"))


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The trained tiny test model (cached on disk), checked to answer some demo questions
    right and some wrong, and to give at least one accepted debater response."""
    from tiny_model import tiny_model

    return tiny_model()
