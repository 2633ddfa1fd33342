"""A local Hugging Face hub for tests: real HTTP on 127.0.0.1, in a thread, no internet.

It answers the routes huggingface_hub's snapshot_download and hf_hub_download call
(huggingface_hub/hf_api.py, file_download.py):
- `GET /api/{models,datasets}/{repo}[/revision/{rev}]`: repo info (`sha`, `siblings`);
- `GET /api/{models,datasets}/{repo}/tree/{rev}[/{path}]`: the file listing (one page);
- `HEAD`/`GET /{repo}/resolve/{rev}/{file}` and `/datasets/{repo}/resolve/{rev}/{file}`:
  the file, with `X-Repo-Commit`, `ETag` and `Content-Length`.
A gated repository answers 401 (no token) or 403 (another token) with `X-Error-Code:
GatedRepo`, as the hub does. Every request is recorded in `requests` as (method, path).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    """A repository served from a local directory (every file under it, recursively)."""

    root: Path
    token: str | None = None  # set: the repository is gated and needs this bearer token
    sha: str = ""

    def __post_init__(self) -> None:
        digest = hashlib.sha1()
        for rel in self.files():
            digest.update(rel.encode() + (self.root / rel).read_bytes())
        self.sha = digest.hexdigest()

    def files(self) -> list[str]:
        return sorted(
            p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()
        )


@dataclass
class HubServer:
    """The server; `repos` maps (`model` | `dataset`, repo id) to a Repo."""

    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def file_gets(self) -> list[str]:
        """Paths of the file downloads (GET .../resolve/...) so far."""
        return [p for m, p in self.requests if m == "GET" and "/resolve/" in p]


def _split_repo(parts: list[str]) -> tuple[str, list[str]]:
    return "/".join(parts[:2]), parts[2:]


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer

    def log_message(self, *args) -> None:  # quiet test output
        return

    def do_HEAD(self) -> None:  # noqa: N802  (http.server's naming)
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _send(self, status: int, payload: bytes, headers: dict[str, str], body: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _error(self, status: int, code: str, message: str, body: bool) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        payload = json.dumps({"error": message}).encode()
        self._send(status, payload, headers | {"Content-Type": "application/json"}, body)

    def _serve(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append((self.command, path))
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in ("models", "datasets"):
            kind = parts[1][:-1]
            repo_id, rest = _split_repo(parts[2:])
            self._api(kind, repo_id, rest, body)
            return
        kind = "model"
        if parts[:1] == ["datasets"]:
            kind, parts = "dataset", parts[1:]
        repo_id, rest = _split_repo(parts)
        if len(rest) >= 3 and rest[0] == "resolve":
            self._file(kind, repo_id, "/".join(rest[2:]), body)
            return
        self._error(404, "EntryNotFound", f"no route {path}", body)

    def _repo(self, kind: str, repo_id: str, body: bool) -> Repo | None:
        repo = self.hub.repos.get((kind, repo_id))
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found", body)
            return None
        if repo.token is not None:
            sent = self.headers.get("Authorization", "")
            if not sent:
                self._error(401, "GatedRepo", f"Access to {kind} {repo_id} is restricted.", body)
                return None
            if sent != f"Bearer {repo.token}":
                msg = f"Access to {kind} {repo_id} is restricted: not in the authorized list."
                self._error(403, "GatedRepo", msg, body)
                return None
        return repo

    def _api(self, kind: str, repo_id: str, rest: list[str], body: bool) -> None:
        repo = self._repo(kind, repo_id, body)
        if repo is None:
            return
        if not rest or rest[0] == "revision":
            info = {
                "id": repo_id,
                "sha": repo.sha,
                "private": False,
                "gated": "manual" if repo.token else False,
                "siblings": [{"rfilename": f} for f in repo.files()],
            }
            self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
            return
        if rest[0] == "tree":
            prefix = "/".join(rest[2:])
            entries = [
                {
                    "type": "file",
                    "oid": hashlib.sha1((repo.root / f).read_bytes()).hexdigest(),
                    "size": (repo.root / f).stat().st_size,
                    "path": f,
                }
                for f in repo.files()
                if not prefix or f.startswith(prefix + "/")
            ]
            self._send(
                200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, body
            )
            return
        self._error(404, "EntryNotFound", f"no api route {rest}", body)

    def _file(self, kind: str, repo_id: str, name: str, body: bool) -> None:
        repo = self._repo(kind, repo_id, body)
        if repo is None:
            return
        target = repo.root / name
        if not target.is_file():
            self._error(404, "EntryNotFound", f"{name} not in {repo_id}", body)
            return
        data = target.read_bytes()
        headers = {
            "X-Repo-Commit": repo.sha,
            "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
            "Content-Type": "application/octet-stream",
        }
        self._send(200, data, headers, body)


def start(hub: HubServer) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve `hub` on a free port of 127.0.0.1 in a daemon thread (sets `hub.port`)."""
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    hub.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
