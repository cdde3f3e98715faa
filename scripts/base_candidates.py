"""Build candidate demo bases and put each through the copy gate, side by side in one run.

Each candidate is a base-build YAML with optional overrides (dotted keys, YAML values), so a
reduced build on CPU or a larger one on a GPU is one argument, not a new file:

    python scripts/base_candidates.py \\
        configs/demo_base.yaml:pretrain.steps=300 \\
        configs/demo_base_v2.yaml:tie_word_embeddings=true,pretrain.steps=300 --out /tmp/candidates.jsonl

Every candidate is built afresh into its own cache (`--cache-dir`, default .cache/candidates; a
rerun of the same candidate resumes or reuses it), timed, then gated on the committed fresh
conversations (replica/eval/copy_gate.py). One JSON line per candidate goes to `--out` as soon as
it is measured, so an interrupted run keeps what it finished; the last lines printed compare them.
With `--export DIR`, the first candidate that passes the gate is exported there as a committed
base (scripts/build_demo_base.py's format).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from replica.bases.tiny import build_key, ensure_base, export_prebuilt, load_build_config  # noqa: E402
from replica.errors import UserError  # noqa: E402
from replica.eval.copy_gate import format_report, gate_base, summary_rows  # noqa: E402

GATE = ROOT / "data" / "demo" / "copy_gate.jsonl.gz"


def parse_candidate(spec: str) -> tuple[Path, dict]:
    """`path.yaml:key=value,a.b=value` → (path, {dotted key: parsed value})."""
    path, _, rest = spec.partition(":")
    overrides = {}
    for item in filter(None, re.split(r",(?=[\w.]+=)", rest)):  # a value may hold commas: [a, b]
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"candidate {spec!r}: override {item!r} is not key=value")
        overrides[key.strip()] = yaml.safe_load(value)
    return Path(path), overrides


def write_variant(path: Path, overrides: dict, cache_dir: Path) -> Path:
    """The candidate as a YAML of its own: overrides applied, paths absolute, no committed copy."""
    config = load_build_config(path)  # validates the original and resolves its corpus paths
    raw = config.model_dump(mode="json") | {"cache_dir": str(cache_dir), "prebuilt": None}
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        where = raw
        for key in parents:
            if not isinstance(where.get(key), dict):
                raise UserError(f"{path}: override {dotted}: {key} is not a section of a base build")
            where = where[key]
        if last not in where:
            raise UserError(f"{path}: override {dotted}: no such key (keys: {', '.join(sorted(where))})")
        where[last] = value
    variant_dir = cache_dir / "configs"
    variant_dir.mkdir(parents=True, exist_ok=True)
    variant = variant_dir / f"{raw['name']}.yaml"
    variant.write_text(yaml.safe_dump(raw, sort_keys=False))
    key = build_key(load_build_config(variant))  # validates the overrides too
    keyed = variant.with_name(f"{raw['name']}-{key}.yaml")
    variant.replace(keyed)
    return keyed


def run_candidate(spec: str, cache_dir: Path, gate: Path) -> dict:
    """Build (or reuse) one candidate and gate it; the line written to --out."""
    import torch

    path, overrides = parse_candidate(spec)
    variant = write_variant(path, overrides, cache_dir)
    started = time.perf_counter()
    built = ensure_base(variant)
    build_seconds = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    report = gate_base(built, gate, built / "copy_gate.json")
    return {
        "candidate": spec,
        "base": str(built),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "build_seconds": build_seconds,
        "gate_seconds": round(time.perf_counter() - started, 1),
        "gate": report,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("candidates", nargs="+", help="CONFIG.yaml[:key=value,...]")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per candidate")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "candidates")
    parser.add_argument("--gate", type=Path, default=GATE, help="the gate's fresh conversations")
    parser.add_argument("--export", type=Path, help="export a candidate that passes the gate here")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for spec in args.candidates:
        print(f"=== {spec}", flush=True)
        result = run_candidate(spec, args.cache_dir, args.gate)
        results.append(result)
        with args.out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")
        print(f"built in {result['build_seconds']} s on {result['device']}: {result['base']}")
        print(format_report(result["gate"]), flush=True)
        if args.export and result["gate"]["passed"] and not args.export.exists():  # the first to pass
            built = Path(result["base"])
            export_prebuilt(built, args.export, built.name.rsplit("-", 1)[1])
            print(f"exported to {args.export}")
    print("=== side by side (copied / at first reuse)")
    for result in results:
        rows = summary_rows(result["gate"])
        cells = "; ".join(f"{name} {copied.split(' of ')[0]}/{first}" for name, copied, first, _, _ in rows)
        print(f"{result['candidate']}  [{result['build_seconds']} s]  {cells}")


if __name__ == "__main__":
    main()
