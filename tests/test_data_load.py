"""load_examples: sources, roles and limits, seeded subsets, data directory resolution."""

from __future__ import annotations

import json

import pytest

from anchor_service.config import DataConfig, DemoTaskConfig
from anchor_service.data import load as load_module
from anchor_service.data.errors import DataError, DataNotFoundError
from anchor_service.data.load import load_examples, resolve_data_dir, select_subset


def _demo(**kw) -> DataConfig:
    return DataConfig(source="demo", demo=DemoTaskConfig(n_train=40, n_test=24, seed=3), **kw)


def test_demo_source_uses_n_train_and_n_test_by_role():
    cfg = _demo()
    train = load_examples(cfg, cfg.train_split, run_seed=0)
    test = load_examples(cfg, "test", run_seed=0)
    assert len(train.examples) == 40 and len(test.examples) == 24
    assert train.examples[0].prompt_id == "demo/train/1" and train.skipped == 0
    assert "demo train" in train.source


def test_limit_keeps_a_seeded_subset_in_original_order():
    full = load_examples(_demo(), "train", run_seed=0).examples
    position = {ex.prompt_id: i for i, ex in enumerate(full)}
    a = load_examples(_demo(limit_train=10), "train", run_seed=1)
    b = load_examples(_demo(limit_train=10), "train", run_seed=1)
    c = load_examples(_demo(limit_train=10), "train", run_seed=2)
    assert len(a.examples) == 10 and a.examples == b.examples
    assert a.examples != c.examples
    order = [position[ex.prompt_id] for ex in a.examples]
    assert order == sorted(order)
    assert "10 of 40 selected (seed 1)" in a.source
    # the test split is not limited by limit_train
    assert len(load_examples(_demo(limit_train=10), "test", run_seed=1).examples) == 24


def test_selection_seed_overrides_run_seed():
    cfg = _demo(limit_test=5, selection_seed=99)
    assert load_examples(cfg, "test", run_seed=1).examples == load_examples(cfg, "test", 2).examples


def test_select_subset_returns_everything_when_limit_is_large():
    items = load_examples(_demo(), "test", 0).examples
    assert select_subset(items, 100, 0, "k") == items
    assert select_subset(items, None, 0, "k") == items


def test_train_role_maps_to_the_configured_split_for_paper_data():
    try:
        data_dir = resolve_data_dir()
    except DataNotFoundError as exc:
        pytest.skip(f"shared data not available: {exc}")
    cfg = DataConfig(source="logiqa", data_dir=str(data_dir), train_split="dev", limit_train=7)
    result = load_examples(cfg, "train", run_seed=0)
    assert len(result.examples) == 7
    assert all(ex.prompt_id.startswith("logiqa/dev/") for ex in result.examples)
    assert load_examples(cfg, "dev", run_seed=0).examples == result.examples


def test_jsonl_source_reads_the_split_from_the_path_template(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        rows = [
            {"question": f"{split} {i}", "options": ["a", "b"], "answer": "b"} for i in range(n)
        ]
        (tmp_path / f"quiz-{split}.jsonl").write_text("\n".join(map(json.dumps, rows)))
    cfg = DataConfig(source="jsonl", path=str(tmp_path / "quiz-{split}.jsonl"))
    test = load_examples(cfg, "test", 0)
    assert [ex.prompt_id for ex in test.examples] == ["quiz/test/1", "quiz/test/2"]
    assert len(load_examples(cfg, "train", 0).examples) == 3


def test_skipped_rows_are_reported_and_all_bad_is_an_error(tmp_path):
    rows = [{"question": "ok", "options": ["a", "b"], "answer": "A"}, {"question": "bad"}]
    (tmp_path / "some.jsonl").write_text("\n".join(map(json.dumps, rows)))
    cfg = DataConfig(source="jsonl", path=str(tmp_path / "some.jsonl"), on_bad_row="skip")
    result = load_examples(cfg, "train", 0)
    assert len(result.examples) == 1 and result.skipped == 1
    assert "line 2" in result.skipped_reasons[0] and "1 malformed rows skipped" in result.source
    (tmp_path / "all_bad.jsonl").write_text(json.dumps({"question": "bad"}))
    cfg = DataConfig(source="jsonl", path=str(tmp_path / "all_bad.jsonl"), on_bad_row="skip")
    with pytest.raises(DataError, match="no usable examples.*1 malformed rows skipped; first:"):
        load_examples(cfg, "train", 0)


def test_unknown_source_and_missing_path_are_data_errors():
    with pytest.raises(DataError, match="unknown data.source 'mmlu'"):
        load_examples(DataConfig(source="mmlu"), "train", 0)
    with pytest.raises(DataError, match="needs data.path"):
        load_examples(DataConfig(source="csv"), "train", 0)


def test_data_dir_from_config_then_env_then_cwd(tmp_path, monkeypatch):
    (tmp_path / "given").mkdir()
    (tmp_path / "env").mkdir()
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "project").mkdir()
    monkeypatch.setenv("ANCHOR_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(str(tmp_path / "given")) == tmp_path / "given"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("ANCHOR_DATA_DIR")
    monkeypatch.chdir(tmp_path / "project")
    assert resolve_data_dir(None) == (tmp_path / "shared" / "data").resolve()


def test_missing_data_dir_says_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.delenv("ANCHOR_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(load_module, "REPO_ROOT", tmp_path / "repo")
    with pytest.raises(DataNotFoundError, match="tried data.data_dir.*ANCHOR_DATA_DIR.*shared"):
        resolve_data_dir(None)
    with pytest.raises(DataNotFoundError, match="data.data_dir = /no/such/dir"):
        resolve_data_dir("/no/such/dir")
