"""Bearer-token auth of the HTTP service.

The token comes from the environment variable `ANCHOR_API_TOKEN` or, failing that, from the
file named by `serve.token_file` (a mounted secret); it is never a config value. It is read
in the ingress replica, so on a cluster it must be set there (a Kubernetes secret as env
var or file), not only in the shell that starts the app. No token configured: open service.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

TOKEN_ENV = "ANCHOR_API_TOKEN"


class TokenFileError(ValueError):
    """`serve.token_file` is set but unreadable or empty; the message says which file."""


def load_token(token_file: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The configured token: `$ANCHOR_API_TOKEN` wins, then `token_file`; None if neither."""
    env = os.environ if environ is None else environ
    value = env.get(TOKEN_ENV, "").strip()
    if value:
        return value
    if not token_file:
        return None
    path = Path(token_file).expanduser()
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TokenFileError(
            f"serve.token_file {path}: cannot read it ({exc.strerror}); point it at a file "
            f"holding the token, set {TOKEN_ENV}, or unset serve.token_file for an open service"
        ) from None
    if not value:
        raise TokenFileError(
            f"serve.token_file {path} is empty; write the token into it (one line) or unset "
            "serve.token_file for an open service"
        )
    return value


def bearer_matches(authorization: str | None, token: str) -> bool:
    """True if an `Authorization` header is `Bearer <token>` (compared in constant time)."""
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    # compare_digest takes time independent of where the strings differ.
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))
