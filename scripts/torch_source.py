"""Where scripts/setup.sh installs torch from; prints the `pip install` arguments, one a line.

In order:
1. a torch wheel of the pin that pip can already reach without a network: a `find-links`
   directory or a `file://` index in pip's own configuration (as on this project's build
   machine). The probe runs pip with `--no-index` (and a 5 s, no-retry budget for a remote
   `find-links` URL), so it never waits on an unreachable index.
   With a GPU, a local `+cpu` wheel is passed over.
2. no NVIDIA GPU (`nvidia-smi -L` lists none) on Linux: the PyTorch CPU wheel index, because
   PyPI's Linux torch wheel is the multi-GB CUDA build.
3. otherwise (a GPU, or macOS, whose PyPI wheels are CPU/MPS builds): the pin from the
   default index.

ANCHOR_TORCH_SOURCE=local|cpu|default forces one (local fails when no wheel is found).
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass

TORCH_VERSION = "2.13.0"
PIN = f"torch=={TORCH_VERSION}"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SOURCES = ("local", "cpu", "default")
# Seconds the local-wheel probe waits on a network location named in pip's config.
PROBE_TIMEOUT_S = 5


@dataclass(frozen=True)
class Plan:
    source: str
    """`local`, `cpu` or `default`."""
    pip_args: list[str]
    """What follows `pip install`."""
    reason: str
    """One line for the person running setup."""


def choose(local_wheel: str | None, has_gpu: bool, system: str, forced: str = "auto") -> Plan:
    """The decision alone (no probing): see the module docstring."""
    if forced not in ("auto", *SOURCES):
        raise ValueError(f"ANCHOR_TORCH_SOURCE={forced!r}: expected auto, local, cpu or default")
    wheel_name = urllib.parse.unquote(local_wheel.rsplit("/", 1)[-1]) if local_wheel else ""
    cpu_only_wheel = "+cpu" in wheel_name
    if forced == "local" or (forced == "auto" and local_wheel and not (has_gpu and cpu_only_wheel)):
        if not local_wheel:
            raise ValueError(f"ANCHOR_TORCH_SOURCE=local, but pip reaches no local {PIN} wheel")
        return Plan("local", [wheel_path(local_wheel)], f"{wheel_name}, found through pip's config")
    if forced == "cpu" or (forced == "auto" and system == "Linux" and not has_gpu):
        why = "ANCHOR_TORCH_SOURCE=cpu" if forced == "cpu" else "no NVIDIA GPU"
        return Plan("cpu", ["--index-url", CPU_INDEX, PIN], f"{why}: CPU build from {CPU_INDEX}")
    why = "NVIDIA GPU: CUDA build" if has_gpu else f"{system}: PyPI's build"
    if local_wheel and has_gpu:
        why += f" (local {wheel_name} is a CPU build)"
    return Plan("default", [PIN], f"{why} from the default index")


def wheel_path(url: str) -> str:
    """A `file://` URL from pip's report as a local path (pip installs either)."""
    if url.startswith("file:"):
        return urllib.request.url2pathname(urllib.parse.urlparse(url).path)
    return url


def local_indexes(pip_config: str) -> list[str]:
    """`file://` index URLs in `pip config list` output (lines `scope.key='value'`)."""
    out = []
    for line in pip_config.splitlines():
        key, _, value = line.partition("=")
        if key.rsplit(".", 1)[-1] in ("index-url", "extra-index-url"):
            out += [u for u in value.strip().strip("'\"").split() if u.startswith("file:")]
    return out


def find_local_wheel(python: str = sys.executable, env: dict[str, str] | None = None) -> str | None:
    """The URL of the torch wheel of the pin that pip picks from local sources only, or None."""
    env = dict(os.environ if env is None else env)
    listed = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, env=env
    )
    pages = [f"{u.rstrip('/')}/torch/" for u in local_indexes(listed.stdout)]
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        cmd = [python, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed"]
        # --no-index skips every index; a remote find-links URL in the user's config is still
        # read, so it gets one short try instead of pip's default retries.
        cmd += ["--no-index", "--retries", "0", "--timeout", str(PROBE_TIMEOUT_S)]
        cmd += ["--quiet", "--report", report]
        for page in pages:
            cmd += ["--find-links", page]
        done = subprocess.run([*cmd, PIN], capture_output=True, text=True, env=env, timeout=300)
        if done.returncode != 0 or not os.path.exists(report):
            return None
        with open(report, encoding="utf-8") as f:
            install = json.load(f).get("install", [])
    urls = [item.get("download_info", {}).get("url") for item in install]
    return next((u for u in urls if u), None)


def has_nvidia_gpu(env: dict[str, str] | None = None) -> bool:
    """`nvidia-smi -L` is on PATH, succeeds and lists at least one GPU."""
    env = dict(os.environ if env is None else env)
    exe = shutil.which("nvidia-smi", path=env.get("PATH"))
    if exe is None:
        return False
    try:
        done = subprocess.run([exe, "-L"], capture_output=True, text=True, env=env, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


def plan_here(env: dict[str, str] | None = None) -> Plan:
    env = dict(os.environ if env is None else env)
    forced = env.get("ANCHOR_TORCH_SOURCE", "auto") or "auto"
    local = None if forced in ("cpu", "default") else find_local_wheel(env=env)
    return choose(local, has_nvidia_gpu(env), platform.system(), forced)


def main() -> int:
    try:
        plan = plan_here()
    except ValueError as exc:
        print(f"setup: {exc}", file=sys.stderr)
        return 2
    print(f"setup: torch {TORCH_VERSION} from {plan.source}: {plan.reason}", file=sys.stderr)
    print("\n".join(plan.pip_args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
