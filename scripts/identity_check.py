"""The identity check of a refactor: run the fp32 tiny-model method and digest its content.

    PYTHONPATH=$PWD python scripts/identity_check.py --out /tmp/run --digest run.json
    PYTHONPATH=$PWD python scripts/identity_check.py --out /tmp/run2 --digest after.json \
        --compare run.json

The digest holds every parquet's rows (sorted by all their columns; no timing columns exist in
these files), the pairs, every stats-*.json, sanity.json, summary.json's numbers, report.md and a hash of
each trained model's weights. `state/` files and Ray Train storage are left out, except that
each stage's fingerprint is recorded on its own: equal fingerprints mean an old run directory
is still valid (its stages are skipped, not recomputed). The run uses the config of
tests/test_pipeline_job.py on the trained tiny test model (built once into --model-dir, so a
change to the tiny model's cache key cannot change the model under the comparison).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"state", "parts", "ray_train", "models"}
# summary.json keys that vary from run to run without a change of content.
SUMMARY_VOLATILE: set[str] = set()


def _canonical(value: Any) -> Any:
    """JSON-able, stable form of a cell (numpy arrays and scalars, NaN)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def parquet_content(path: Path) -> dict[str, Any]:
    """Columns and rows of a parquet file, rows sorted so their order in the file is free."""
    df = pd.read_parquet(path)
    rows = [[_canonical(v) for v in row] for row in df.itertuples(index=False, name=None)]
    rows.sort(key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return {"columns": list(df.columns), "rows": rows}


def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_hashes(run: Path) -> dict[str, str]:
    """sha256 over each trained model's weight files (name and bytes)."""
    out = {}
    models = run / "models"
    for d in sorted(p for p in models.iterdir() if p.is_dir()) if models.is_dir() else []:
        h = hashlib.sha256()
        for f in sorted(d.rglob("*.safetensors")):
            h.update(str(f.relative_to(d)).encode())
            h.update(f.read_bytes())
        out[d.name] = h.hexdigest()
    return out


def content(run: Path) -> dict[str, Any]:
    """Everything the comparison looks at, by run-directory relative path."""
    files: dict[str, Any] = {}
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run)
        if not path.is_file() or rel.parts[0] in SKIP_DIRS:
            continue
        if path.suffix == ".parquet":
            files[str(rel)] = parquet_content(path)
        elif path.name == "report.md":
            files[str(rel)] = path.read_text(encoding="utf-8")
        elif path.name.startswith("stats-") or path.name == "sanity.json":
            files[str(rel)] = json.loads(path.read_text())
        elif path.name == "summary.json":
            summary = json.loads(path.read_text())
            files[str(rel)] = {k: v for k, v in summary.items() if k not in SUMMARY_VOLATILE}
    fingerprints = {
        p.stem: json.loads(p.read_text()).get("fingerprint")
        for p in sorted((run / "state").glob("*.json"))
        if p.name != "timings.json"
    }
    return {"files": files, "fingerprints": fingerprints, "models": model_hashes(run)}


def digest(full: dict[str, Any]) -> dict[str, Any]:
    return {
        "files": {k: _hash(v) for k, v in full["files"].items()},
        "fingerprints": full["fingerprints"],
        "models": full["models"],
    }


def compare(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Differences between two digests, one line each (empty: identical)."""
    out = []
    for section in ("files", "fingerprints", "models"):
        a, b = got[section], want[section]
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append(f"{section}/{k}: {a.get(k)} != baseline {b.get(k)}")
    return out


def run_method(out: Path, model_dir: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_pipeline_job import tiny_config

    from anchor_service.cli.main import main

    cfg_path = out.parent / f"{out.name}-config.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(model_dir)))
    if main(["run", "--config", str(cfg_path), "--out", str(out)]) != 0:
        raise SystemExit("the run failed")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="run directory (reused if present)")
    p.add_argument("--digest", type=Path, required=True, help="write the digest here")
    p.add_argument("--model-dir", type=Path, default=Path("/work/arch-tiny-model"))
    p.add_argument("--compare", type=Path, help="a baseline digest to compare with")
    p.add_argument("--no-run", action="store_true", help="digest --out as it is")
    args = p.parse_args()
    if not (args.model_dir / "config.json").is_file():
        import shutil

        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_model import tiny_model

        shutil.copytree(tiny_model(), args.model_dir)
    if not args.no_run:
        run_method(args.out, args.model_dir)
    full = content(args.out)
    (args.digest.with_suffix(".content.json")).write_text(json.dumps(full, indent=1, default=str))
    d = digest(full)
    args.digest.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")
    print(f"digest of {len(d['files'])} files -> {args.digest}")
    if args.compare:
        diffs = compare(d, json.loads(args.compare.read_text()))
        print("\n".join(diffs) if diffs else "IDENTICAL to the baseline")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
