"""A real PEP 503 package index on 127.0.0.1 serving wheels built in a test, and pip settings
that make `pip download` use it and nothing else (no PyPI, no machine-wide pip config).
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import shutil
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def normalise(project: str) -> str:
    """PEP 503 project name normalisation."""
    return re.sub(r"[-_.]+", "-", project).lower()


def build_wheel(dest: Path, project: str, version: str, members: dict[str, bytes]) -> Path:
    """A minimal py3-none-any wheel holding `members` plus the dist-info pip reads."""
    dist = re.sub(r"[-_.]+", "_", project).lower()
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
        )
        zf.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{info}/RECORD", "")
    return wheel


@dataclass
class LocalIndex:
    """A `simple/` tree under `root`, served over HTTP; `requests` lists every path fetched."""

    root: Path
    url: str = ""
    requests: list[str] = field(default_factory=list)

    def publish(self, wheel: Path, project: str) -> None:
        """Add a wheel to the index (with its sha256 in the link, as PyPI does)."""
        files = self.root / "files"
        files.mkdir(parents=True, exist_ok=True)
        shutil.copy2(wheel, files / wheel.name)
        page = self.root / "simple" / normalise(project)
        page.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        href = html.escape(f"../../files/{wheel.name}#sha256={digest}")
        (page / "index.html").write_text(
            f'<!DOCTYPE html><html><body><a href="{href}">{wheel.name}</a></body></html>'
        )

    def unpublish(self, project: str) -> None:
        """Remove a project from the index (pip then finds no such distribution)."""
        shutil.rmtree(self.root / "simple" / normalise(project))

    def wheel_downloads(self) -> list[str]:
        """The wheel files fetched so far, in order."""
        return [p.rsplit("/", 1)[-1] for p in self.requests if p.endswith(".whl")]


@contextmanager
def serve_index(root: Path) -> Iterator[LocalIndex]:
    """Serve `root` on a free 127.0.0.1 port until the block ends."""
    index = LocalIndex(root)
    (root / "simple").mkdir(parents=True, exist_ok=True)

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            index.requests.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    index.url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def use_only_index(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point every pip subprocess at `url` alone: no config files, no extra indexes or links."""
    # os.devnull as PIP_CONFIG_FILE makes pip skip every config file (global, user, site).
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in list(os.environ):
        if name.startswith("PIP_") and name != "PIP_CONFIG_FILE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_INDEX_URL", url)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "15")
