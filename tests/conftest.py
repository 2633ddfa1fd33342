"""Shared fixtures: the embedded model, a random tiny model, the trained tiny test model, a
free port, and the Serve app on the tiny model.

Slow tests (`@pytest.mark.slow`, the real embedded model) run only with `--run-slow` or
`ANCHOR_RUN_SLOW=1`; the fault suite (`@pytest.mark.faults`) only with `ANCHOR_RUN_FAULTS=1`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from anchor_service.config import RunConfig


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
    # The fault suite (~20 min) runs only where asked for: scripts/test-separate.sh faults.
    if os.environ.get("ANCHOR_RUN_FAULTS") != "1":
        skip_faults = pytest.mark.skip(reason="faults: run with ANCHOR_RUN_FAULTS=1")
        for item in items:
            if "faults" in item.keywords:
                item.add_marker(skip_faults)
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """Call it for a TCP port free on 127.0.0.1 at that moment (a fresh one each call)."""
    return _free_port


@dataclass
class LiveService:
    """A running Serve app: its base URL and the config it was started with."""

    url: str
    cfg: RunConfig


@pytest.fixture(scope="session")
def serve_tiny_model(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., AbstractContextManager[LiveService]]:
    """`with serve_tiny_model(*overrides, token=None) as live:` runs the Serve app with the
    tiny test model as policy and judge (fp32) on a free port, plus `overrides`; with `token`
    the app reads it from a token file ($ANCHOR_API_TOKEN unset, so the file is what counts).
    Serve, and Ray if it was started here, shut down when the block ends."""

    @contextmanager
    def serve(*overrides: str, token: str | None = None) -> Iterator[LiveService]:
        import ray
        from ray import serve as ray_serve

        from anchor_service.config import load_config
        from anchor_service.serve.app import start
        from anchor_service.serve.auth import TOKEN_ENV

        model = str(tiny_model_dir)
        base = [
            f"policy.name={model}",
            "policy.dtype=float32",
            f"judge.model.name={model}",
            "judge.model.dtype=float32",
            f"serve.port={_free_port()}",
        ]
        if token is not None:
            token_file = tmp_path_factory.mktemp("secret") / "token"
            token_file.write_text(token + "\n")
            base.append(f"serve.token_file={token_file}")
        cfg = load_config(None, [*base, *overrides])
        owns_ray = not ray.is_initialized()
        with pytest.MonkeyPatch.context() as mp:
            if token is not None:
                mp.delenv(TOKEN_ENV, raising=False)
            url = start(cfg)
        try:
            yield LiveService(url=url, cfg=cfg)
        finally:
            ray_serve.shutdown()
            if owns_ray:
                ray.shutdown()

    return serve


@pytest.fixture(scope="module", autouse=True)
def ray_left_as_found():
    """Each test module leaves Ray as it found it: a module whose code started Ray in this
    process (e.g. a CLI command run in-process) and did not stop it gets it stopped here, so
    the next module's fixtures start their own cluster. Autouse at module scope, so it is torn
    down after the module's own fixtures."""
    import sys

    was_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    yield
    ray = sys.modules.get("ray")
    if ray is not None and not was_up and ray.is_initialized():
        from ray import serve

        try:
            serve.shutdown()
        except Exception:  # noqa: BLE001 - Serve may not be running; Ray must still stop
            pass
        ray.shutdown()


@pytest.fixture(scope="module")
def local_ray(request: pytest.FixtureRequest):
    """A local Ray cluster (`cluster.ensure_ray`) for a module, stopped after it if it started
    it here. The module's own classes and functions travel to Ray's workers by value (the
    workers cannot import test modules)."""
    import ray
    from ray import cloudpickle

    from anchor_service.cluster import ensure_ray

    cloudpickle.register_pickle_by_value(request.module)
    owns = not ray.is_initialized()
    ensure_ray()
    yield ray
    if owns:
        ray.shutdown()
