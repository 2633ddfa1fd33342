"""Snapshots of Hugging Face hub repositories, downloaded on first use as transformers does.

One download per cache: the first process takes a file lock in the cache's `.locks`
folder and fetches; the others wait and then find the snapshot complete. A snapshot that is
complete in the cache is used without contacting the hub at all (so a thousand actors
starting do not send a thousand API calls); to pick up a newer commit, delete the cache entry
or run `hf download` again.

What is read from the environment, at call time:
- `HF_ENDPOINT`: the hub's address (a mirror, or a local server in the tests);
- `HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`): never contact the hub; a snapshot
  missing from the cache is an error that says how to pre-download it;
- the cache: `$ANCHOR_MODEL_CACHE` for models (`cluster.model_cache`), else `$HF_HUB_CACHE`,
  else `$HF_HOME/hub`, else huggingface_hub's default (`~/.cache/huggingface/hub`);
- the token: huggingface_hub reads `HF_TOKEN`, else the token file (`$HF_HOME/token`,
  written by `hf auth login`), on the machine that downloads. Nothing here passes it on.

Progress is huggingface_hub's own tqdm bars (`HF_HUB_DISABLE_PROGRESS_BARS=1` hides them).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_CACHE_ENV = "ANCHOR_MODEL_CACHE"
DEFAULT_ENDPOINT = "https://huggingface.co"

# (snapshot directory, every file path of the repository) -> the files this use needs.
Selector = Callable[[Path, list[str]], list[str]]


class HubAccessError(Exception):
    """A hub snapshot could not be had; the message says why and what to do.

    `kind` is `offline`, `auth`, `not_found`, `unreachable`, `incomplete` or `http`.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def endpoint() -> str:
    """The hub's base URL: `$HF_ENDPOINT`, else https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    """Whether `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) forbids contacting the hub."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def cache_dir(repo_type: str = "model") -> Path:
    """The hub cache this process uses for `repo_type` (see the module docstring)."""
    names = ((MODEL_CACHE_ENV,) if repo_type == "model" else ()) + (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
    )
    for name in names:
        if os.environ.get(name):
            return Path(os.path.expandvars(os.environ[name])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def web_url(repo_id: str, repo_type: str = "model") -> str:
    """The repository's page on the hub (where a gated model's licence is accepted)."""
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    return f"{endpoint()}/{prefix}{repo_id}"


def is_repo_id(name: str) -> bool:
    """Whether `name` has the form of a hub repository id (`org/name` or `name`)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _download_hint(repo_id: str, repo_type: str) -> str:
    flag = "" if repo_type == "model" else f" --repo-type {repo_type}"
    return (
        f"pre-download it on a machine with hub access (`hf download {repo_id}{flag}` with the "
        f"same HF_HOME, or ANCHOR_MODEL_CACHE as --cache-dir) and copy that cache here"
    )


def _cached(repo_id: str, repo_type: str, cache: Path, select: Selector) -> tuple[Path | None, str]:
    """The complete cached snapshot of the default branch, or None and what is missing."""
    from huggingface_hub import snapshot_download

    try:
        snap = Path(
            snapshot_download(
                repo_id,
                repo_type=repo_type,
                cache_dir=cache,
                local_files_only=True,
                allow_patterns=[],
            )
        )
    except Exception:  # noqa: BLE001  (any failure means: no snapshot in this cache)
        return None, f"no snapshot of {repo_id} in {cache}"
    try:
        files = _cached_tree(repo_id, repo_type, snap.name, cache)
    except Exception:  # noqa: BLE001  (a cache written by other tools has no tree listing)
        files = [p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file()]
    try:
        needed = select(snap, files)
    except (OSError, ValueError) as exc:
        return None, f"the cached snapshot {snap}: {exc}"
    missing = [f for f in needed if not (snap / f).is_file()]
    if missing:
        return None, f"the cached snapshot {snap} lacks {', '.join(missing[:3])}"
    return snap, "cached"


def _cached_tree(repo_id: str, repo_type: str, commit: str, cache: Path) -> list[str]:
    """The repository's file list at `commit` as the last download cached it (no request)."""
    from huggingface_hub import get_cached_repo_tree  # huggingface_hub 2: the tree cache

    tree = get_cached_repo_tree(repo_id, repo_type=repo_type, revision=commit, cache_dir=cache)
    return [f.path for f in tree]


def snapshot(repo_id: str, select: Selector, meta: list[str], repo_type: str = "model") -> Path:
    """A local snapshot of `repo_id` holding the files `select` picks; downloaded if need be.

    `meta` are the patterns of the small files fetched first (config, tokenizer, index,
    README); `select` then sees them in the snapshot, with the repository's file list, and
    names every file the caller needs. Raises HubAccessError.
    """
    cache = cache_dir(repo_type)
    snap, why = _cached(repo_id, repo_type, cache, select)
    if snap is not None:
        return snap
    if offline():
        raise HubAccessError(
            f"hub {repo_type} '{repo_id}' is not in the cache ({why}) and HF_HUB_OFFLINE is set, "
            f"so it cannot be downloaded: {_download_hint(repo_id, repo_type)}, or unset "
            "HF_HUB_OFFLINE on a machine that reaches the hub",
            "offline",
        )
    from filelock import FileLock

    locks = cache / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = locks / f"anchor-{repo_type}s--{repo_id.replace('/', '--')}.lock"
    with FileLock(str(lock)):
        snap, _ = _cached(repo_id, repo_type, cache, select)
        if snap is not None:  # another process on this cache finished it meanwhile
            return snap
        log.warning(
            "downloading hub %s %s from %s into %s (first use with this cache)",
            repo_type,
            repo_id,
            endpoint(),
            cache,
        )
        with _explained(repo_id, repo_type):
            return _download(repo_id, repo_type, cache, select, meta)


@contextlib.contextmanager
def _hub_online() -> Iterator[None]:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import; this module reads it per call, and
    only downloads when it is unset, so the library's flag follows for the download."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _download(repo_id: str, repo_type: str, cache: Path, select: Selector, meta: list[str]) -> Path:
    with _hub_online():
        return _download_online(repo_id, repo_type, cache, select, meta)


def _download_online(
    repo_id: str, repo_type: str, cache: Path, select: Selector, meta: list[str]
) -> Path:
    from huggingface_hub import HfApi, snapshot_download

    common = {"repo_type": repo_type, "cache_dir": cache, "endpoint": endpoint()}
    first = Path(snapshot_download(repo_id, allow_patterns=meta, **common))
    commit = first.name
    try:
        files = _cached_tree(repo_id, repo_type, commit, cache)
    except Exception:  # noqa: BLE001  (a huggingface_hub without the tree cache: ask the hub)
        api = HfApi(endpoint=endpoint())
        files = api.list_repo_files(repo_id, repo_type=repo_type, revision=commit)
    try:
        needed = select(first, files)
    except (OSError, ValueError) as exc:
        raise HubAccessError(f"hub {repo_type} '{repo_id}': {exc}", "incomplete") from exc
    # The commit, not the branch: the files all come from the tree whose metadata was read.
    snap = Path(snapshot_download(repo_id, revision=commit, allow_patterns=needed, **common))
    missing = [f for f in needed if not (snap / f).is_file()]
    if missing:
        raise HubAccessError(
            f"hub {repo_type} '{repo_id}': the download left {', '.join(missing[:3])} missing "
            f"in {snap}; run again (the finished files are kept)",
            "incomplete",
        )
    return snap


class _explained:
    """Turns huggingface_hub's and httpx's errors into HubAccessError saying what to do."""

    def __init__(self, repo_id: str, repo_type: str) -> None:
        self.repo_id, self.repo_type = repo_id, repo_type

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, HubAccessError) or not isinstance(exc, Exception):
            return False
        raise explain(exc, self.repo_id, self.repo_type) from exc


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors: the OS's, and those of the HTTP client huggingface_hub uses."""
    out: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for name in ("httpx2", "httpx"):  # huggingface_hub 2 ships httpx2; older ones used httpx
        try:
            out.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(out)


def explain(exc: Exception, repo_id: str, repo_type: str = "model") -> HubAccessError:
    """The HubAccessError for a failed hub call (gated, not found, unreachable, offline)."""
    from huggingface_hub import get_token
    from huggingface_hub.errors import (
        GatedRepoError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what, url = f"hub {repo_type} '{repo_id}'", web_url(repo_id, repo_type)
    chain = _chain(exc)
    found = {type(e) for e in chain}
    status = next((s for s in map(_status, chain) if s is not None), None)
    has_token = get_token() is not None
    token_hint = (
        "the token this machine sent was refused: check it, and accept the licence at "
        f"{url} with the account it belongs to"
        if has_token
        else "no token was sent: set HF_TOKEN (or run `hf auth login`) on every machine that "
        f"loads it, and accept the licence at {url}"
    )
    if any(issubclass(t, GatedRepoError) for t in found) or status == 403:
        return HubAccessError(f"{what} is gated (HTTP {status}); {token_hint}", "auth")
    if any(issubclass(t, RevisionNotFoundError) for t in found):
        return HubAccessError(f"{what}: revision not found on {endpoint()} ({exc})", "not_found")
    if any(issubclass(t, RepositoryNotFoundError) for t in found) or status in (401, 404):
        private = "" if status == 404 else f", or it is private or gated and {token_hint}"
        return HubAccessError(
            f"{what} was not found on {endpoint()} (HTTP {status}): check the id{private}",
            "not_found" if status == 404 else "auth",
        )
    if any(issubclass(t, OfflineModeIsEnabled) for t in found):
        return HubAccessError(
            f"{what} cannot be downloaded: huggingface_hub is in offline mode "
            f"(HF_HUB_OFFLINE); {_download_hint(repo_id, repo_type)}",
            "offline",
        )
    if any(issubclass(t, _transport_errors()) for t in found):
        return HubAccessError(
            f"{what}: could not reach the hub at {endpoint()} ({type(chain[-1]).__name__}: "
            f"{chain[-1]}); check the network and HF_ENDPOINT, or "
            f"{_download_hint(repo_id, repo_type)} and set HF_HUB_OFFLINE=1",
            "unreachable",
        )
    return HubAccessError(
        f"{what}: download from {endpoint()} failed ({type(exc).__name__}: {exc})", "http"
    )
