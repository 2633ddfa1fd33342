"""`anchor-align config show|schema|docs`, and docs/CONFIG.md kept equal to the models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from anchor_service.cli.config_docs import REGENERATE, render_markdown, sections_in_order
from anchor_service.cli.main import main
from anchor_service.cli.run import demo_config_path
from anchor_service.config import RunConfig, dump_config, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG_MD = ROOT / "docs" / "CONFIG.md"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_show_demo_prints_the_resolved_demo_config(capsys):
    rc, out, _ = run_cli(capsys, "config", "show", "--config", "demo")
    assert rc == 0
    assert RunConfig.model_validate(yaml.safe_load(out)) == load_config(demo_config_path())
    # Every key is printed, defaults included (what a run records as config.yaml).
    assert out == dump_config(load_config(demo_config_path()))
    assert "serve:" in out and "limits:" in out


def test_show_resolves_bases_and_overrides(capsys):
    path = ROOT / "jobs" / "configs" / "logiqa.yaml"
    rc, out, _ = run_cli(capsys, "config", "show", "--config", str(path), "--set", "run_seed=4")
    assert rc == 0
    shown = yaml.safe_load(out)
    assert "base" not in shown
    assert shown["run_seed"] == 4
    assert shown["data"]["source"] == "logiqa"
    assert shown["policy"]["name"] == "meta-llama/Meta-Llama-3-8B-Instruct"  # from _base.yaml


def test_show_without_config_prints_the_defaults(capsys):
    rc, out, _ = run_cli(capsys, "config", "show")
    assert rc == 0 and RunConfig.model_validate(yaml.safe_load(out)) == RunConfig()


def test_show_names_a_mistyped_key(capsys):
    rc, out, err = run_cli(capsys, "config", "show", "--set", "sampling.temprature=1")
    assert rc == 2 and out == ""
    assert "sampling.temprature" in err and "sampling.temperature" in err


def test_schema_accepts_resolved_configs_and_rejects_bad_ones(capsys):
    rc, out, _ = run_cli(capsys, "config", "schema")
    assert rc == 0
    schema = json.loads(out)
    assert set(schema["properties"]) == set(RunConfig.model_fields)
    validator = jsonschema.Draft202012Validator(schema)
    for path in [demo_config_path(), *sorted((ROOT / "jobs" / "configs").glob("*.yaml"))]:
        validator.validate(load_config(path).model_dump(mode="json"))
    bad = RunConfig().model_dump(mode="json")
    bad["sampling"]["n"] = 0
    bad["pairs"]["strategies"] = ["anchor", "nope"]
    bad["policy"]["typo"] = 1
    errors = {tuple(e.absolute_path) for e in validator.iter_errors(bad)}
    assert {("sampling", "n"), ("pairs", "strategies", 1), ("policy",)} <= errors


def test_config_md_is_up_to_date():
    assert CONFIG_MD.read_text(encoding="utf-8") == render_markdown(), (
        f"docs/CONFIG.md is out of date with anchor_service/config.py; run: {REGENERATE}"
    )


def test_reference_lists_every_field_of_every_section():
    text = render_markdown()
    for cls in sections_in_order(RunConfig):
        section = text.split(f"\n## {cls.__name__}\n", 1)[1].split("\n## ", 1)[0]
        for name, field in cls.model_fields.items():
            row = next(line for line in section.splitlines() if line.startswith(f"| `{name}` |"))
            assert field.description.split()[0] in row, f"{cls.__name__}.{name}"


def test_reference_shows_defaults_types_and_section_overrides():
    text = render_markdown()
    assert '| `engine` | "hf" \\| "vllm" \\| "openai" \\| "oracle" \\| "serve" | `"hf"` |' in text
    assert "| `n` | int, ≥ 1 | `4` |" in text
    assert "`sft.lora`, `dpo.lora`" in text
    assert "`policy`, `debater`, `judge.model`, `eval_judge.model`" in text
    # A section whose default differs from its class's defaults says so.
    assert "(section) with `num_cpus: 0.25`" in text
    assert "*Result-neutral.*" in text


@pytest.mark.timeout(120)
def test_module_entry_point_prints_the_reference():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "anchor_service.cli.config", "docs"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert done.stdout == render_markdown()
