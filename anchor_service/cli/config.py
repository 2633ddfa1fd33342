"""`anchor-align config show|schema|docs`: the resolved config, its JSON Schema, its reference.

Also runnable as `python -m anchor_service.cli.config docs > docs/CONFIG.md`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from anchor_service.cli.common import add_config_args
from anchor_service.config import RunConfig, dump_config, load_config

HELP = "print the resolved config, its JSON Schema, or the Markdown reference of every key"


def config_path(name: str | None) -> str | Path | None:
    """`demo` names the packaged demo config; anything else is a file path."""
    if name == "demo":
        from anchor_service.cli.run import demo_config_path

        return demo_config_path()
    return name


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help=HELP, description=HELP + ".")
    actions = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show",
        help="print the resolved config as YAML (what a run records as config.yaml)",
        description="Read --config (with its `base:` files; `demo` = the packaged demo "
        "config; none = the defaults), apply --set overrides, validate, and print every key.",
    )
    add_config_args(show)
    show.set_defaults(func=show_config)
    schema = actions.add_parser("schema", help="print the JSON Schema of the config models")
    schema.set_defaults(func=show_schema)
    docs = actions.add_parser("docs", help="print the Markdown reference (docs/CONFIG.md)")
    docs.set_defaults(func=show_docs)


def show_config(args: argparse.Namespace) -> int:
    cfg = load_config(config_path(args.config), args.overrides)
    sys.stdout.write(dump_config(cfg))
    return 0


def show_schema(args: argparse.Namespace) -> int:
    print(json.dumps(RunConfig.model_json_schema(), indent=2, ensure_ascii=False))
    return 0


def show_docs(args: argparse.Namespace) -> int:
    from anchor_service.cli.config_docs import render_markdown

    sys.stdout.write(render_markdown())
    return 0


if __name__ == "__main__":
    from anchor_service.cli.main import main

    sys.exit(main(["config", *sys.argv[1:]]))
