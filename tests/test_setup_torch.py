"""scripts/torch_source.py: which torch build scripts/setup.sh installs, and from where.

The decision is tested as a table; the probes run the real pip (against a fake torch wheel in
a temporary find-links directory or file:// index, with pip's own config switched off) and
a fake `nvidia-smi`. The network is never used: the indexes themselves are not tested.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "torch_source.py"
spec = importlib.util.spec_from_file_location("torch_source", SCRIPT)
ts = importlib.util.module_from_spec(spec)
sys.modules["torch_source"] = ts  # dataclasses look their module up while it is executed
spec.loader.exec_module(ts)

CPU_WHEEL = "file:///opt/wheels/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl"
CUDA_WHEEL = "file:///opt/wheels/torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"
CPU_INDEX_ARGS = ["--index-url", "https://download.pytorch.org/whl/cpu", "torch==2.13.0"]


@pytest.mark.parametrize(
    ("wheel", "gpu", "system", "source", "args"),
    [
        # A local wheel pip reaches wins, on a machine without a GPU...
        (
            CPU_WHEEL,
            False,
            "Linux",
            "local",
            ["/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"],
        ),
        # ...and with one, unless it is a CPU build.
        (
            CUDA_WHEEL,
            True,
            "Linux",
            "local",
            ["/opt/wheels/torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"],
        ),
        (CPU_WHEEL, True, "Linux", "default", ["torch==2.13.0"]),
        # No local wheel, no GPU: the PyTorch CPU index with the same pin.
        (None, False, "Linux", "cpu", CPU_INDEX_ARGS),
        # A GPU: the default index's (CUDA) build.
        (None, True, "Linux", "default", ["torch==2.13.0"]),
        # macOS: PyPI's wheels are CPU/MPS builds; the plain pin.
        (None, False, "Darwin", "default", ["torch==2.13.0"]),
    ],
)
def test_decision_table(wheel, gpu, system, source, args):
    plan = ts.choose(wheel, gpu, system)
    assert (plan.source, plan.pip_args) == (source, args)
    assert plan.reason


def test_forcing_a_source():
    assert ts.choose(CPU_WHEEL, False, "Linux", "cpu").pip_args == CPU_INDEX_ARGS
    assert ts.choose(CPU_WHEEL, False, "Linux", "default").pip_args == ["torch==2.13.0"]
    assert ts.choose(CPU_WHEEL, True, "Linux", "local").source == "local"
    with pytest.raises(ValueError, match="no local torch==2.13.0 wheel"):
        ts.choose(None, False, "Linux", "local")
    with pytest.raises(ValueError, match="expected auto, local, cpu or default"):
        ts.choose(None, False, "Linux", "cuda")


def test_pin_matches_pyproject_and_constraints():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=2.11,<2.14"' in pyproject  # admits the GPU machine's 2.11 and this pin
    assert f"{ts.PIN}\n" in (ROOT / "constraints.txt").read_text()


def test_file_indexes_are_read_from_pip_config_output():
    out = (
        "global.extra-index-url='file:///opt/pypi/simple file:///opt/more/simple'\n"
        "global.index-url='https://pypi.org/simple'\n"
        ":env:.find-links='/opt/wheels'\n"
        "install.extra-index-url='https://example.org/simple\nfile:///x/simple'\n"
    )
    assert ts.local_indexes(out) == ["file:///opt/pypi/simple", "file:///opt/more/simple"]


def fake_torch_wheel(folder: Path, version: str = "2.13.0+cpu") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"torch-{version}-py3-none-any.whl"
    info = f"torch-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
        z.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(f"{info}/RECORD", "")
    return wheel


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any pip configuration or nvidia-smi on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.pop("ANCHOR_TORCH_SOURCE", None)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    env.update(PIP_CONFIG_FILE=os.devnull, PATH=str(bin_dir), PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra)
    return env


def silent_index() -> socket.socket:
    """A TCP port that accepts connections and never answers: an index pip would hang on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    return s


def nobody_connected(s: socket.socket) -> bool:
    try:
        s.accept()[0].close()
    except BlockingIOError:
        return True
    return False


@pytest.mark.timeout(120)
def test_probe_finds_a_find_links_wheel_without_touching_the_index(tmp_path: Path):
    wheel = fake_torch_wheel(tmp_path / "wheels")
    index = silent_index()
    port = index.getsockname()[1]
    env = clean_env(
        tmp_path,
        PIP_FIND_LINKS=str(tmp_path / "wheels"),
        PIP_INDEX_URL=f"http://127.0.0.1:{port}/simple",
        PIP_DEFAULT_TIMEOUT="60",
    )
    start = time.monotonic()
    url = ts.find_local_wheel(sys.executable, env)
    assert url is not None and ts.wheel_path(url) == str(wheel)
    assert time.monotonic() - start < 60  # well under the index's timeout
    assert nobody_connected(index)
    index.close()


@pytest.mark.timeout(120)
def test_probe_gives_a_silent_remote_find_links_one_short_try(tmp_path: Path):
    wheel = fake_torch_wheel(tmp_path / "wheels")
    remote = silent_index()
    links = f"http://127.0.0.1:{remote.getsockname()[1]}/links/ {tmp_path / 'wheels'}"
    env = clean_env(tmp_path, PIP_FIND_LINKS=links, PIP_DEFAULT_TIMEOUT="100")
    start = time.monotonic()
    url = ts.find_local_wheel(sys.executable, env)
    assert url is not None and ts.wheel_path(url) == str(wheel)
    # Without the short try pip waits at least its 100 s timeout; a loaded machine can make
    # pip itself start slowly, so the bound only has to separate the two.
    assert time.monotonic() - start < 90
    remote.close()


@pytest.mark.timeout(120)
def test_probe_finds_a_wheel_in_a_file_index_and_none_when_absent(tmp_path: Path):
    files = tmp_path / "index" / "files"
    wheel = fake_torch_wheel(files)
    page = tmp_path / "index" / "simple" / "torch"
    page.mkdir(parents=True)
    page.joinpath("index.html").write_text(
        f'<html><body><a href="../../files/{wheel.name}">{wheel.name}</a></body></html>'
    )
    env = clean_env(tmp_path, PIP_EXTRA_INDEX_URL=(tmp_path / "index" / "simple").as_uri())
    url = ts.find_local_wheel(sys.executable, env)
    assert url is not None and Path(ts.wheel_path(url)).resolve() == wheel.resolve()
    # Another pin's wheel does not count; nothing local at all gives None.
    other = clean_env(
        tmp_path, PIP_FIND_LINKS=str(fake_torch_wheel(tmp_path / "old", "2.12.0").parent)
    )
    assert ts.find_local_wheel(sys.executable, other) is None
    assert ts.find_local_wheel(sys.executable, clean_env(tmp_path)) is None


def fake_nvidia_smi(tmp_path: Path, body: str) -> None:
    exe = tmp_path / "bin" / "nvidia-smi"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)


def test_gpu_probe(tmp_path: Path):
    env = clean_env(tmp_path)
    assert not ts.has_nvidia_gpu(env)
    fake_nvidia_smi(tmp_path, "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)'")
    assert ts.has_nvidia_gpu(env)
    # Installed tools without a working driver report no GPU.
    fake_nvidia_smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    assert not ts.has_nvidia_gpu(env)


def run_script(env: dict[str, str]) -> tuple[list[str], str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines(), done.stderr


@pytest.mark.timeout(300)
@pytest.mark.skipif(sys.platform != "linux", reason="the CPU-index branch is the Linux one")
def test_script_prints_pip_arguments_for_each_machine(tmp_path: Path):
    wheel = fake_torch_wheel(tmp_path / "wheels")
    # Local wheel present -> that wheel.
    args, err = run_script(clean_env(tmp_path, PIP_FIND_LINKS=str(wheel.parent)))
    assert args == [str(wheel)] and "from local" in err
    # Absent, no GPU -> the CPU index.
    args, err = run_script(clean_env(tmp_path))
    assert args == CPU_INDEX_ARGS and "from cpu" in err
    # A GPU -> the default (CUDA) build.
    fake_nvidia_smi(tmp_path, "echo 'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-1)'")
    args, err = run_script(clean_env(tmp_path))
    assert args == ["torch==2.13.0"] and "CUDA build" in err
    # A forced source that cannot be met is an error naming the variable.
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env=clean_env(tmp_path, ANCHOR_TORCH_SOURCE="local"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "ANCHOR_TORCH_SOURCE=local" in done.stderr
