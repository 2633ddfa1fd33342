"""Entry point of `anchor-align`."""

from __future__ import annotations

import argparse
import logging
import sys

from anchor_service import __version__
from anchor_service.cli import config, experiment, explain, report, run, score, serve
from anchor_service.cli.common import UsageError, setup_logging
from anchor_service.config import ConfigError

SUBCOMMANDS = [score, explain, run, experiment, report, serve, config]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anchor-align",
        description="Anchored alignment of self-explanations (arXiv 2410.13216) on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"anchor-align {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(-1 if args.quiet else args.verbose)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ConfigError) as exc:
        print(f"anchor-align {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a last line: name the failure, keep the traceback in -v
        from anchor_service.engines.base import EngineError

        if isinstance(exc, EngineError):
            print(f"anchor-align {args.command}: error: {exc}", file=sys.stderr)
            logging.getLogger(__name__).debug("traceback", exc_info=True)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
