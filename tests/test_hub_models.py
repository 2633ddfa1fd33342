"""Hub model ids download on first use, against a local hub server (tests/hub_server.py).

HF_ENDPOINT points at 127.0.0.1 and HF_HOME at a temporary directory: never the internet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import HubServer, Repo, start

from anchor_service.engines.registry import ModelNotFoundError, resolve_model
from anchor_service.hub_download import MODEL_CACHE_ENV

TOKEN = "hf_test_secret_token"
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_repo(random_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random model's files as a hub repository, plus files a load does not need."""
    root = tmp_path_factory.mktemp("hub-repo") / "tiny"
    shutil.copytree(random_model_dir, root)
    (root / "README.md").write_text("# tiny\n")
    (root / "original").mkdir()
    (root / "original" / "consolidated.00.pth").write_bytes(b"\0" * 1024)
    return root


@pytest.fixture(scope="module")
def sharded_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with an index, two shards and a duplicate consolidated file."""
    root = tmp_path_factory.mktemp("hub-sharded")
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (root / "tokenizer.json").write_text("{}")
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = {"metadata": {}, "weight_map": {"a": shards[0], "b": shards[1], "c": shards[1]}}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    for name in [*shards, "consolidated.safetensors"]:
        (root / name).write_bytes(b"x" * 64)
    return root


@pytest.fixture
def hub(model_repo: Path, sharded_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A running local hub; the process's hub settings point at it and at a fresh cache."""
    import huggingface_hub.constants

    server_state = HubServer(
        repos={
            ("model", "test-org/tiny"): Repo(model_repo),
            ("model", "test-org/gated"): Repo(model_repo, token=TOKEN),
            ("model", "test-org/sharded"): Repo(sharded_repo),
        }
    )
    server, _ = start(server_state)
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", MODEL_CACHE_ENV, "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", server_state.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    # The token file's path is fixed when huggingface_hub is imported: keep it in tmp too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    yield server_state
    server.shutdown()
    server.server_close()


def test_first_use_downloads_what_a_load_needs_and_second_use_sends_nothing(hub, tmp_path):
    path = resolve_model("test-org/tiny")
    assert path.is_relative_to(tmp_path / "hf-home" / "hub")
    got = sorted(p.name for p in path.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(
        got
    )
    assert "README.md" not in got and "original" not in got
    fetched = sorted(p.rsplit("/", 1)[-1] for p in hub.file_gets())
    assert fetched == got  # each file downloaded exactly once
    hub.requests.clear()
    assert resolve_model("test-org/tiny") == path
    assert hub.requests == []


def test_downloaded_model_loads_with_the_same_weights(hub, model_repo):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model("test-org/tiny")
    got = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    want = AutoModelForCausalLM.from_pretrained(model_repo, dtype=torch.float32)
    for (name, a), (_, b) in zip(got.state_dict().items(), want.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert AutoTokenizer.from_pretrained(path).chat_template


def test_offline_mode_refuses_clearly_when_not_cached_and_works_when_cached(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("test-org/tiny")
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and "hf download test-org/tiny" in msg
    assert hub.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    path = resolve_model("test-org/tiny")
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("test-org/tiny") == path
    assert hub.requests == []


def test_gated_model_401_without_token_says_to_set_hf_token_and_accept_the_licence(hub):
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("test-org/gated")
    msg = str(err.value)
    assert "gated (HTTP 401)" in msg
    assert "set HF_TOKEN" in msg and "hf auth login" in msg
    assert f"accept the licence at {hub.url}/test-org/gated" in msg
    assert err.value.__cause__.kind == "auth"


def test_gated_model_with_a_wrong_token_is_403_and_with_the_right_one_downloads(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("test-org/gated")
    assert "gated (HTTP 403)" in str(err.value) and "refused" in str(err.value)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert (resolve_model("test-org/gated") / "model.safetensors").is_file()


def test_unknown_repo_and_unreachable_endpoint_say_what_happened(hub, monkeypatch, free_port):
    with pytest.raises(
        ModelNotFoundError, match=r"was not found on http://127.0.0.1:\d+ \(HTTP 404"
    ):
        resolve_model("test-org/no-such-model")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("test-org/tiny")
    msg = str(err.value)
    assert "could not reach the hub at http://127.0.0.1:" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "hf download test-org/tiny" in msg


def test_sharded_weights_follow_the_index_and_skip_a_duplicate_copy(hub):
    path = resolve_model("test-org/sharded")
    got = sorted(p.name for p in path.iterdir())
    assert got == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
    ]


def test_tokenizer_only_resolve_fetches_no_weights_and_a_later_full_one_adds_them(hub):
    path = resolve_model("test-org/tiny", weights=False)
    assert (path / "tokenizer.json").is_file() and not (path / "model.safetensors").exists()
    hub.requests.clear()
    assert resolve_model("test-org/tiny") == path
    assert [p.rsplit("/", 1)[-1] for p in hub.file_gets()] == ["model.safetensors"]


def test_model_cache_env_puts_the_snapshot_there(hub, monkeypatch, tmp_path):
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "shared-models"))
    path = resolve_model("test-org/tiny")
    assert path.is_relative_to(tmp_path / "shared-models")
    assert not (tmp_path / "hf-home" / "hub").exists()


def test_concurrent_processes_download_each_file_once(hub, tmp_path):
    code = (
        "import sys; from anchor_service.engines.registry import resolve_model; "
        "print(resolve_model('test-org/tiny'))"
    )
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env["HF_TOKEN_PATH"] = str(tmp_path / "no-token")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1].decode()[-2000:] for o in outs]
    paths = {o[0].decode().strip() for o in outs}
    assert len(paths) == 1
    gets = hub.file_gets()
    assert len(gets) == len(set(gets)) == len(list(Path(paths.pop()).iterdir()))
    # The repository's info was asked for once: the other processes found the snapshot.
    assert sum(1 for m, p in hub.requests if "/revision/" in p) == 1


def test_offline_from_process_start_uses_the_cache_and_refuses_the_rest(hub, tmp_path):
    # HF_HUB_OFFLINE set before huggingface_hub is imported, as a user's shell sets it.
    cached = resolve_model("test-org/tiny")
    hub.requests.clear()
    code = (
        "from anchor_service.engines.registry import resolve_model\n"
        "print(resolve_model('test-org/tiny'))\n"
        "try:\n    resolve_model('test-org/sharded')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    env["HF_TOKEN_PATH"] = str(tmp_path / "no-token")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = proc.stdout.strip().splitlines()
    assert first == str(cached)
    assert second.startswith("ModelNotFoundError") and "HF_HUB_OFFLINE is set" in second
    assert hub.requests == []
