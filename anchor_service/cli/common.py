"""Options shared by several subcommands: config file, overrides, model selection."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from anchor_service.config import ConfigError, RunConfig, load_config


class UsageError(ValueError):
    """Wrong command-line input; printed without a traceback, exit status 2."""


def add_command(
    sub: argparse._SubParsersAction, name: str, func: Callable, help: str, description: str, **kw
) -> argparse.ArgumentParser:
    """The subcommand `name`, which runs `func(args)`; `kw` goes to argparse as it is."""
    p = sub.add_parser(name, help=help, description=description, **kw)
    p.set_defaults(func=func)
    return p


def add_question_args(p: argparse.ArgumentParser, required: bool) -> None:
    """--question and the repeatable --option: one multiple-choice item."""
    p.add_argument("--question", required=required, help="the question text")
    p.add_argument(
        "--option", action="append", default=[], help="an option text (repeat, in order)"
    )


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (defaults: the embedded model on CPU)")
    add_overrides_arg(p, "override a config key, e.g. --set judge.model.dtype=float32")


def add_overrides_arg(p: argparse.ArgumentParser, help: str) -> None:
    """The repeatable --set KEY=VALUE (args.overrides)."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{help} (repeatable)",
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
    "add_command",
    "add_config_args",
    "add_model_args",
    "add_overrides_arg",
    "add_question_args",
    "model_overrides",
    "resolve_config",
    "setup_logging",
]
