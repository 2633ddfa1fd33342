"""Config: strict YAML loading, dotted overrides, errors that name the key."""

from pathlib import Path

import pytest

from anchor_service.config import (
    ConfigError,
    RunConfig,
    dump_config,
    load_config,
    parse_override,
)


def test_defaults_follow_method_md():
    cfg = load_config()
    assert cfg.sampling.n == 4
    assert cfg.sampling.temperature == 0.8
    assert cfg.sampling.top_p == 0.95
    assert cfg.debate.max_retries == 2 and cfg.debate.temperature == 0.7
    assert cfg.pairs.strategies == ["anchor", "rank"]
    assert cfg.pairs.min_pairs == 8
    assert cfg.dpo.beta == 0.1
    assert (cfg.sft.lora.r, cfg.sft.lora.alpha, cfg.sft.lora.dropout) == (16, 32, 0.05)


def test_yaml_file_and_overrides_combine(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("run_seed: 7\ndata:\n  source: arc-challenge\n  limit_train: 50\n")
    cfg = load_config(f, ["data.limit_train=20", "pairs.strategies=[anchor, maxmin]"])
    assert cfg.run_seed == 7
    assert cfg.data.source == "arc-challenge"
    assert cfg.data.limit_train == 20
    assert cfg.pairs.strategies == ["anchor", "maxmin"]


def test_unknown_key_is_named_with_suggestion(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("sampling:\n  temprature: 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert "sampling.temprature" in msg
    assert "sampling.temperature" in msg
    assert str(f) in msg


def test_mistyped_override_key_is_named():
    with pytest.raises(ConfigError, match=r"judge\.model\.nme.*judge\.model\.name"):
        load_config(None, ["judge.model.nme=foo"])


def test_wrong_value_type_names_the_key():
    with pytest.raises(ConfigError, match=r"'sampling\.n'"):
        load_config(None, ["sampling.n=many"])


def test_out_of_range_value_is_rejected():
    with pytest.raises(ConfigError, match=r"sampling\.top_p"):
        load_config(None, ["sampling.top_p=1.5"])


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("data.limit_train")


def test_override_values_parse_as_yaml():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=[x, y]") == (["a"], ["x", "y"])
    assert parse_override("a=true") == (["a"], True)


def test_missing_file_and_non_mapping_are_clear(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    f = tmp_path / "list.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(f)


def test_dump_roundtrips_to_the_same_config(tmp_path: Path):
    cfg = load_config(None, ["run_seed=3", "data.limit_test=9", "dpo.merge=true"])
    f = tmp_path / "resolved.yaml"
    f.write_text(dump_config(cfg))
    assert load_config(f) == cfg


def test_every_field_is_documented():
    def walk(model, prefix=""):
        for name, field in model.model_fields.items():
            assert field.description, f"{prefix}{name} has no docstring"
            ann = field.annotation
            for cand in getattr(ann, "__args__", (ann,)):
                if isinstance(cand, type) and hasattr(cand, "model_fields"):
                    walk(cand, f"{prefix}{name}.")

    walk(RunConfig)


def test_result_dump_leaves_out_result_neutral_knobs_only():
    from anchor_service.config import DPOConfig, SFTConfig, TrainScaling

    base = DPOConfig()
    neutral = DPOConfig(scaling=TrainScaling(reuse_freed_memory=False))
    assert neutral.result_dump() == base.result_dump()
    assert "reuse_freed_memory" not in base.result_dump()["scaling"]
    assert neutral.model_dump() != base.model_dump()
    # Everything else still counts, nested sections included.
    assert DPOConfig(beta=0.2).result_dump() != base.result_dump()
    assert DPOConfig(scaling=TrainScaling(num_workers=2)).result_dump() != base.result_dump()
    # Fingerprints of existing run directories stay what they were before the knob existed.
    old = SFTConfig().model_dump()
    del old["scaling"]["reuse_freed_memory"]
    del old["trainer_args"]  # OMIT_AT_DEFAULT: counts only once it is set
    assert SFTConfig().result_dump() == old
