"""Hub datasets (the `hf` source and the paper datasets' hub copies) against a local hub.

The server (tests/hub_server.py) holds parquet repositories in the hub's layout, some built
from the paper files themselves, so a hub copy must give exactly the files' examples.
HF_ENDPOINT points at 127.0.0.1 and HF_HOME at a temporary directory: never the internet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hub_server import HubServer, Repo, start

from anchor_service.config import ColumnMap, DataConfig
from anchor_service.data.errors import DataNotFoundError
from anchor_service.data.load import load_examples, resolve_data_dir
from anchor_service.data.paper import load_paper

TOKEN = "hf_dataset_token"
ARC_COLUMNS = ColumnMap(
    id="id", question="question", options="choices.text", answer="answerKey", labels="choices.label"
)


def _parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _card(configs: dict[str, str]) -> str:
    """A dataset card whose YAML names each config's split files (as the hub's cards do)."""
    lines = ["---", "configs:"]
    for name, folder in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        for split in ("train", "validation", "test"):
            lines += [f"  - split: {split}", f"    path: {folder}/{split}-*"]
    return "\n".join([*lines, "---", "", "# card", ""])


def _ai2_hub_rows(path: Path, stem_field: str) -> list[dict]:
    """The hub's layout of ARC/OpenBookQA rows, from a paper .jsonl file."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        choices = row["question"]["choices"]
        out.append(
            {
                "id": row["id"],
                stem_field: row["question"]["stem"],
                "choices": {
                    "text": [c["text"] for c in choices],
                    "label": [c["label"] for c in choices],
                },
                "answerKey": row["answerKey"],
            }
        )
    return out


def _write_synthetic_paper_files(root: Path) -> Path:
    """A few items of each paper dataset in the files' formats (a clean clone has no data)."""

    def ai2(qid: str, key: str, labels: str) -> str:
        choices = [{"text": f"choice {label} of {qid}", "label": label} for label in labels]
        return json.dumps(
            {"id": qid, "question": {"stem": f"Stem {qid}?", "choices": choices}, "answerKey": key}
        )

    for config in ("ARC-Challenge", "ARC-Easy"):
        for name in ("Train", "Dev", "Test"):
            lines = [ai2(f"{config}-{name}-{i}", "ABCD"[i % 4], "ABCD") for i in range(4)]
            lines.append(ai2(f"{config}-{name}-numeric", "3", "1234"))
            path = root / "arc" / config / f"{config}-{name}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in ("train", "dev", "test"):
        path = root / "openbookqa" / "Main" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [ai2(f"{i}-{name}", "ABCD"[i % 4], "ABCD") for i in range(4)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "aqua_rat").mkdir()
    for name in ("dev", "test"):
        rows = [
            {
                "question": f"{name} problem {i}?",
                "options": [f"{letter}){i * 10 + k}" for k, letter in enumerate("ABCDE")],
                "rationale": "because",
                "correct": "ABCDE"[i % 5],
            }
            for i in range(3)
        ]
        text = "\n".join(json.dumps(r) for r in rows) + "\n"
        (root / "aqua_rat" / f"{name}.json").write_text(text, encoding="utf-8")
    (root / "logiqa").mkdir()
    item = "\na\nA context.\nA question?\nA.one\nB.two\nC.three\nD.four\n"
    (root / "logiqa" / "Eval.txt").write_text(item * 2, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def paper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The paper files: the shared ones where present, else a few synthetic items each."""
    try:
        return resolve_data_dir()
    except DataNotFoundError:
        return _write_synthetic_paper_files(tmp_path_factory.mktemp("paper-files"))


def _is_shared(path: Path) -> bool:
    return (path / "SOURCES.md").is_file()


@pytest.fixture(scope="module")
def repos(paper_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    shared = paper_dir
    root = tmp_path_factory.mktemp("hub-datasets")
    arc = root / "ai2_arc"
    (arc).mkdir()
    (arc / "README.md").write_text(
        _card({"ARC-Challenge": "ARC-Challenge", "ARC-Easy": "ARC-Easy"})
    )
    for config in ("ARC-Challenge", "ARC-Easy"):
        for split, name in (("train", "Train"), ("validation", "Dev"), ("test", "Test")):
            src = shared / "arc" / config / f"{config}-{name}.jsonl"
            _parquet(
                arc / config / f"{split}-00000-of-00001.parquet", _ai2_hub_rows(src, "question")
            )
    obqa = root / "openbookqa"
    obqa.mkdir()
    (obqa / "README.md").write_text(_card({"main": "main"}))
    for split, name in (("train", "train"), ("validation", "dev"), ("test", "test")):
        src = shared / "openbookqa" / "Main" / f"{name}.jsonl"
        _parquet(
            obqa / "main" / f"{split}-00000-of-00001.parquet", _ai2_hub_rows(src, "question_stem")
        )
    aqua = root / "aqua_rat"
    aqua.mkdir()
    (aqua / "README.md").write_text(_card({"raw": "raw"}))
    for split, name in (("validation", "dev"), ("test", "test"), ("train", "dev")):
        rows = [
            json.loads(x) for x in (shared / "aqua_rat" / f"{name}.json").open(encoding="utf-8")
        ]
        _parquet(aqua / "raw" / f"{split}-00000-of-00001.parquet", rows)
    # LogiQA's copy has no card: splits come from the file names, as the hub's default layout.
    logiqa = root / "logiqa"
    for split in ("train", "validation", "test"):
        rows = [
            {
                "context": f"Context {split} {i}.",
                "query": f"Which follows {i}?",
                "options": [f"A.first {i}", "B.second", "C. third", "D.fourth"],
                "correct_option": i % 4,
            }
            for i in range(6)
        ]
        _parquet(logiqa / "data" / f"{split}-00000-of-00001.parquet", rows)
    return {"arc": arc, "obqa": obqa, "aqua": aqua, "logiqa": logiqa}


@pytest.fixture
def hub(repos, tmp_path, monkeypatch):
    import huggingface_hub.constants

    state = HubServer(
        repos={
            ("dataset", "allenai/ai2_arc"): Repo(repos["arc"]),
            ("dataset", "allenai/openbookqa"): Repo(repos["obqa"]),
            ("dataset", "deepmind/aqua_rat"): Repo(repos["aqua"]),
            ("dataset", "lucasmccabe/logiqa"): Repo(repos["logiqa"]),
            ("dataset", "test-org/gated-arc"): Repo(repos["arc"], token=TOKEN),
        }
    )
    server, _ = start(state)
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", state.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-home" / "datasets"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    yield state
    server.shutdown()
    server.server_close()


def test_hf_source_hub_id_downloads_one_config_once(hub, paper_dir):
    cfg = DataConfig(source="hf", path="allenai/ai2_arc:ARC-Challenge", columns=ARC_COLUMNS)
    first = load_examples(cfg, "test", run_seed=0)
    file_examples = load_paper("arc-challenge", paper_dir, "test").examples
    # The same questions and gold answers as the file (numeric labels included).
    assert [(e.question, e.options, e.gold) for e in first.examples] == [
        (e.question, e.options, e.gold) for e in file_examples
    ]
    fetched = hub.file_gets()
    assert fetched and all("ARC-Easy" not in p for p in fetched)
    assert len(fetched) == len(set(fetched))
    hub.requests.clear()
    assert load_examples(cfg, "test", run_seed=0).examples == first.examples
    assert hub.requests == []


@pytest.mark.parametrize(
    ("source", "split", "count"),
    [
        ("arc-challenge", "dev", 299),
        ("arc-easy", "test", 2376),
        ("openbookqa", "dev", 500),
        ("aqua-rat", "test", 254),
    ],
)
def test_paper_dataset_without_files_reads_its_hub_copy_with_the_files_examples(
    hub, paper_dir, tmp_path, source, split, count
):
    empty = tmp_path / "no-files"
    empty.mkdir()
    got = load_examples(DataConfig(source=source, data_dir=str(empty)), split, run_seed=0)
    want = load_paper(source, paper_dir, split)
    if _is_shared(paper_dir):
        assert len(got.examples) == count
    assert got.examples and got.examples == want.examples  # questions, options, gold, ids


def test_logiqa_hub_copy_fills_the_missing_train_split(hub, paper_dir):
    assert not (paper_dir / "logiqa" / "Train.txt").exists()
    cfg = DataConfig(source="logiqa", data_dir=str(paper_dir))
    got = load_examples(cfg, "train", run_seed=0).examples
    assert [ex.prompt_id for ex in got] == [f"logiqa/train/{i}" for i in range(1, 7)]
    assert got[1].question == "Context train 1.\n\nWhich follows 1?"
    assert got[1].options == ("first 1", "second", "third", "fourth")
    assert [ex.gold for ex in got] == [0, 1, 2, 3, 0, 1]
    # The dev file exists, so it is read from the file, not the hub.
    hub.requests.clear()
    dev = load_examples(cfg, "dev", run_seed=0).examples
    assert dev == load_paper("logiqa", paper_dir, "dev").examples
    assert hub.requests == []


def test_offline_without_cached_copy_names_the_file_and_how_to_predownload(
    hub, tmp_path, monkeypatch
):
    cfg = DataConfig(source="arc-challenge", data_dir=str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError) as err:
        load_examples(cfg, "dev", run_seed=0)
    msg = str(err.value)
    assert "ARC-Challenge-Dev.jsonl does not exist" in msg
    assert "HF_HUB_OFFLINE" in msg and "hf download allenai/ai2_arc --repo-type dataset" in msg
    assert hub.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    online = load_examples(cfg, "dev", run_seed=0).examples
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.requests.clear()
    assert load_examples(cfg, "dev", run_seed=0).examples == online
    assert hub.requests == []


def test_without_hub_fallback_a_missing_file_is_an_error_and_no_request_is_sent(hub, tmp_path):
    cfg = DataConfig(source="arc-challenge", data_dir=str(tmp_path), hub_fallback=False)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_examples(cfg, "dev", run_seed=0)
    with pytest.raises(DataNotFoundError, match="is not a directory"):
        load_examples(DataConfig(source="arc-challenge", data_dir="/no/such/dir"), "dev", 0)
    assert hub.requests == []


def test_gated_dataset_401_gives_the_token_hint_with_the_dataset_page(hub):
    cfg = DataConfig(source="hf", path="test-org/gated-arc:ARC-Easy", columns=ARC_COLUMNS)
    with pytest.raises(DataNotFoundError) as err:
        load_examples(cfg, "dev", run_seed=0)
    msg = str(err.value)
    assert "gated (HTTP 401)" in msg and "set HF_TOKEN" in msg
    assert f"accept the licence at {hub.url}/datasets/test-org/gated-arc" in msg


def test_unknown_config_lists_the_configs(hub):
    cfg = DataConfig(source="hf", path="allenai/ai2_arc:ARC-Medium", columns=ARC_COLUMNS)
    with pytest.raises(DataNotFoundError, match="no config 'ARC-Medium'.*ARC-Challenge, ARC-Easy"):
        load_examples(cfg, "test", run_seed=0)


def test_no_data_directory_at_all_reads_the_hub_copy(hub, paper_dir, tmp_path, monkeypatch):
    from anchor_service.data import load as load_module

    want = load_paper("openbookqa", paper_dir, "test").examples
    monkeypatch.delenv("ANCHOR_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(load_module, "REPO_ROOT", tmp_path / "clone")
    got = load_examples(DataConfig(source="openbookqa"), "test", run_seed=0)
    assert got.examples == want
