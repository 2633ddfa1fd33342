"""Options shared by several subcommands: config file, overrides, model selection."""

from __future__ import annotations

import argparse
import logging
import sys

from anchor_service.config import ConfigError, RunConfig, load_config


class UsageError(ValueError):
    """Wrong command-line input; printed without a traceback, exit status 2."""


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (defaults: the embedded model on CPU)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set judge.model.dtype=float32 (repeatable)",
    )


def add_model_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--model",
        help=f"{what} model: registry key (default smollm2-135m-instruct), hub id or local path",
    )
    p.add_argument("--engine", choices=["hf", "vllm", "openai"], help=f"{what} engine backend")
    p.add_argument("--base-url", help="OpenAI-compatible server URL (engine openai)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])


def model_overrides(args: argparse.Namespace, prefix: str) -> list[str]:
    """Turn --model/--engine/... into dotted overrides under `prefix` (e.g. judge.model)."""
    out = []
    for flag, key in (
        ("model", "name"),
        ("engine", "engine"),
        ("base_url", "base_url"),
        ("dtype", "dtype"),
        ("device", "device"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{prefix}.{key}={value}")
    return out


def resolve_config(args: argparse.Namespace, extra: list[str]) -> RunConfig:
    # Flags win over --set, which wins over the file.
    return load_config(args.config, list(args.overrides) + extra)


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


__all__ = [
    "ConfigError",
    "UsageError",
    "add_config_args",
    "add_model_args",
    "model_overrides",
    "resolve_config",
    "setup_logging",
]
