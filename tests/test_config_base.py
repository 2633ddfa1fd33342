"""Config files that extend a base file (`base:`), and the dataset configs built on one."""

import json
from pathlib import Path

import pytest

from anchor_service.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
JOB_CONFIGS = ROOT / "jobs" / "configs"
# What each dataset config resolved to when every file still stated every key (values that
# differ from config.py's defaults; keys at their default are left out, so adding a field
# with a default does not touch this file). Regenerate only for an intended change.
RESOLVED = Path(__file__).parent / "data" / "job_configs_resolved.json"


def dataset_configs() -> list[Path]:
    return sorted(p for p in JOB_CONFIGS.glob("*.yaml") if not p.name.startswith("_"))


def test_every_dataset_config_resolves_as_before():
    expected = json.loads(RESOLVED.read_text())
    assert sorted(p.name for p in dataset_configs()) == sorted(expected)
    for p in dataset_configs():
        got = load_config(p).model_dump(mode="json", exclude_defaults=True)
        assert got == expected[p.name], p.name


def test_dataset_configs_state_only_what_differs():
    for p in dataset_configs():
        text = p.read_text()
        assert "base: _base.yaml" in text, p.name
        assert "policy:" not in text and "pipeline:" not in text, p.name


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_deep_merges_relative_to_the_including_file(tmp_path: Path):
    write(tmp_path / "shared" / "common.yaml", "run_seed: 5\nsampling: {n: 2, max_tokens: 64}\n")
    write(
        tmp_path / "shared" / "gpu.yaml",
        "base: common.yaml\npolicy: {dtype: bfloat16, batch_size: 32}\n"
        "pairs: {strategies: [anchor, rank, maxmin]}\n",
    )
    f = write(
        tmp_path / "runs" / "mine.yaml",
        "base: ../shared/gpu.yaml\nsampling: {n: 8}\npolicy: {batch_size: 4}\n"
        "pairs: {strategies: [anchor]}\n",
    )
    cfg = load_config(f, ["sampling.temperature=0.5"])
    assert cfg.run_seed == 5
    # Mappings merge key by key: the file's n, the base's max_tokens, the override's temperature.
    assert (cfg.sampling.n, cfg.sampling.max_tokens, cfg.sampling.temperature) == (8, 64, 0.5)
    assert (cfg.policy.dtype, cfg.policy.batch_size) == ("bfloat16", 4)
    # Lists are replaced, not concatenated.
    assert cfg.pairs.strategies == ["anchor"]


def test_a_list_of_bases_merges_in_order(tmp_path: Path):
    write(tmp_path / "a.yaml", "run_seed: 1\nsampling: {n: 2}\n")
    write(tmp_path / "b.yaml", "run_seed: 2\n")
    cfg = load_config(write(tmp_path / "c.yaml", "base: [a.yaml, b.yaml]\n"))
    assert (cfg.run_seed, cfg.sampling.n) == (2, 2)


def test_missing_base_names_both_files(tmp_path: Path):
    f = write(tmp_path / "c.yaml", "base: nope.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert "nope.yaml not found" in str(err.value) and "c.yaml" in str(err.value)


def test_a_cycle_of_bases_is_an_error_naming_the_chain(tmp_path: Path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(write(tmp_path / "self.yaml", "base: self.yaml\n"))


def test_bad_base_value_and_bad_keys_in_a_base_are_clear(tmp_path: Path):
    with pytest.raises(ConfigError, match="`base` must be a file name"):
        load_config(write(tmp_path / "c.yaml", "base: {x: 1}\n"))
    write(tmp_path / "b.yaml", "sampling: {temprature: 0.5}\n")
    with pytest.raises(ConfigError, match=r"sampling\.temprature.*sampling\.temperature"):
        load_config(write(tmp_path / "d.yaml", "base: b.yaml\n"))
