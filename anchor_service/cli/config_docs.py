"""docs/CONFIG.md from the config models: every section, field, type, default and docstring.

The reference is generated, never written by hand, so it cannot drift from config.py
(tests/test_config_docs.py compares the file with a fresh rendering).
"""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from anchor_service.config import RunConfig

REGENERATE = "python -m anchor_service.cli.config docs > docs/CONFIG.md"

INTRO = f"""\
# Configuration reference

<!-- Generated from anchor_service/config.py by `{REGENERATE}`; do not edit. -->

A run is configured by one YAML mapping whose keys are the fields below; every key has a
default, so a file states only what it changes. `--set key.sub=value` (any command) overrides
one key after the file is read; the value is parsed as YAML (`--set pairs.strategies=[anchor]`).
An unknown key is an error naming it and the closest known key.

A file may start from other files: `base: other.yaml` (or a list of files, merged in order),
relative to the file that names it. Mappings merge key by key and the including file wins;
lists and scalars are replaced whole. `jobs/configs/_base.yaml` is the base of the paper
dataset configs. `anchor-align config show --config FILE [--set ...]` prints the resolved
config (what a run directory records as `config.yaml`; `--config demo` is the packaged demo
config), `anchor-align config schema` the JSON Schema of these models.

Types: `a | b` is one of the listed values; `≥ 1` and similar are bounds checked on load.
A field marked *result-neutral* cannot change what a stage computes, so changing it does not
redo finished stages of a run.
"""


def _section(tp: Any) -> type[BaseModel] | None:
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def render_type(tp: Any) -> str:
    """A field annotation in words: `int`, `"hf" | "vllm"`, `list of ...`, `ModelSpec`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(render_type(a) for a in args)
    if origin is list:
        return f"list of {render_type(args[0])}"
    if origin is dict:
        return f"mapping {render_type(args[0])} → {render_type(args[1])}"
    section = _section(tp)
    if section is not None:
        return f"[{section.__name__}](#{section.__name__.lower()})"
    return getattr(tp, "__name__", str(tp))


def render_bounds(field: FieldInfo) -> str:
    """`≥ 1, ≤ 10` from the field's constraints (pydantic keeps each as an object with one
    attribute named after its bound)."""
    words = []
    for meta in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                words.append(f"{sign} {getattr(meta, attr)}")
    return ", ".join(words)


def default_of(field: FieldInfo) -> Any:
    return field.default_factory() if field.default_factory is not None else field.default


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def render_default(field: FieldInfo) -> str:
    value = default_of(field)
    if isinstance(value, BaseModel):
        # A section whose default differs from its class's own defaults says how.
        own = _flat(type(value)().model_dump(mode="json"))
        differs = {k: v for k, v in _flat(value.model_dump(mode="json")).items() if own[k] != v}
        if not differs:
            return "(section)"
        return "(section) with " + ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in differs.items())
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().replace("|", "\\|")


def sections_in_order(root: type[BaseModel]) -> dict[type[BaseModel], list[str]]:
    """Every section class reachable from `root`, in first-use order, with the dotted key
    paths where it is used."""
    found: dict[type[BaseModel], list[str]] = {root: [""]}
    queue: list[tuple[type[BaseModel], str]] = [(root, "")]
    while queue:  # the models form a tree (no section contains itself), so this ends
        cls, prefix = queue.pop(0)
        for name, field in cls.model_fields.items():
            for tp in typing.get_args(field.annotation) or (field.annotation,):
                section = _section(tp)
                if section is not None:
                    path = f"{prefix}{name}"
                    found.setdefault(section, []).append(path)
                    queue.append((section, f"{path}."))
    return found


def render_section(cls: type[BaseModel], paths: list[str]) -> str:
    lines = [f"## {cls.__name__}", ""]
    if paths == [""]:
        lines.append("The top level of a config file.")
    else:
        lines.append("Used at: " + ", ".join(f"`{p}`" for p in paths) + ".")
    doc = cls.__dict__.get("__doc__")
    if doc:
        lines += ["", _cell(doc)]
    lines += ["", "| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in cls.model_fields.items():
        kind = render_type(field.annotation)
        bounds = render_bounds(field)
        if bounds:
            kind = f"{kind}, {bounds}"
        meaning = field.description or ""
        if (field.json_schema_extra or {}).get("result_neutral"):
            meaning += " *Result-neutral.*"
        lines.append(
            f"| `{name}` | {_cell(kind)} | {_cell(render_default(field))} | {_cell(meaning)} |"
        )
    return "\n".join(lines) + "\n"


def render_markdown(root: type[BaseModel] = RunConfig) -> str:
    """The whole reference: the introduction, then one table per section class."""
    parts = [INTRO]
    for cls, paths in sections_in_order(root).items():
        parts.append(render_section(cls, paths))
    return "\n".join(parts)
