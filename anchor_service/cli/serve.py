"""`anchor-align serve`: run the HTTP service (judge + policy on Ray Serve) until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from anchor_service.cli.common import UsageError, add_command, add_config_args, resolve_config
from anchor_service.config import RunConfig
from anchor_service.rundir import RunDir

HELP = "serve the judge and the policy over HTTP (Ray Serve)"

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "serve",
        run,
        HELP,
        (
            "Start the HTTP service: POST /v1/score, /v1/score/batch and /v1/explain, the "
            "OpenAI-compatible POST /v1/chat/completions and /v1/completions, GET /healthz "
            "and /v1/models, OpenAPI at /docs. Without --config the embedded model is both "
            "policy and judge. With --run DIR the policy models are the run's, by name: sft "
            "and one per trained strategy (anchor, rank, ...; LoRA adapters on sft), and the "
            "config is the run's config.yaml unless --config is given. A bearer token is "
            "required when ANCHOR_API_TOKEN or serve.token_file is set. Attaches to the Ray "
            "cluster of cluster.address or RAY_ADDRESS, else starts a local one."
        ),
    )
    p.add_argument("--host", help="address to bind (default serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default serve.port, 8000)")
    p.add_argument(
        "--run",
        metavar="DIR",
        help="serve this run directory's models (serve.policy_run_dir); its config.yaml is "
        "the config unless --config is given",
    )
    add_config_args(p)


def run(args: argparse.Namespace) -> int:
    cfg = serve_config(args)
    return _serve(cfg)


def serve_config(args: argparse.Namespace) -> RunConfig:
    """The config `anchor-align serve` runs with: --config (or the run's config.yaml with
    --run), then --set, then --host/--port/--run."""
    extra = []
    if args.host:
        extra.append(f"serve.host={args.host}")
    if args.port is not None:
        if not 1 <= args.port <= 65535:
            raise UsageError(f"--port {args.port}: must be between 1 and 65535")
        extra.append(f"serve.port={args.port}")
    if args.run:
        run_dir = Path(args.run).expanduser().resolve()
        rundir = RunDir(run_dir, create=False)
        if not rundir.model("sft").parent.is_dir():
            raise UsageError(
                f"--run {args.run}: {run_dir} has no models/ directory; give a run directory "
                "whose sft and dpo stages have finished"
            )
        if args.config is None and rundir.config.is_file():
            args.config = str(rundir.config)
        extra.append(f"serve.policy_run_dir={run_dir}")
    return resolve_config(args, extra)


def _serve(cfg: RunConfig) -> int:
    from anchor_service.serve.app import start
    from anchor_service.serve.auth import TokenFileError, load_token

    # Fail before starting Ray when the token file is wrong (the replica reads it again).
    try:
        token = load_token(cfg.serve.token_file)
    except TokenFileError as exc:
        raise UsageError(str(exc)) from None
    if token is None and cfg.serve.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving on %s without a token: anyone who can reach it can use it; "
            "set ANCHOR_API_TOKEN or serve.token_file",
            cfg.serve.host,
        )
    url = start(cfg)
    print(f"anchor-service on {url} (docs: {url}/docs); Ctrl-C stops it", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        from ray import serve

        serve.shutdown()
    return 0
