"""Train the demo's base model from configs/demo_base.yaml and refresh its committed copy.

    python scripts/build_demo_base.py                       # train (GPU if present), write data/demo/base/
    python scripts/build_demo_base.py --from-cache          # export an already built base, no training

The build is deterministic for a given config, corpus and device (seeded initialization, data
order and tokenizer training). The committed copy carries a manifest with the build key (a hash of
the config and the corpus), the build config and the sha256 of every file; `replica demo` installs
it into the cache only when the key matches its config, so an edited config trains afresh
(`replica demo --rebuild-base` forces that).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from replica.bases.tiny import build_key, built_base_dir, ensure_base, export_prebuilt, load_build_config  # noqa: E402

MAX_COMMITTED_BYTES = 25 * 2**20  # the committed base must stay small enough for a git repository


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo_base.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "demo" / "base")
    parser.add_argument("--from-cache", action="store_true", help="export the cached build; do not train")
    args = parser.parse_args(argv)

    config = load_build_config(args.config)
    built = built_base_dir(args.config) if args.from_cache else ensure_base(args.config, rebuild=True)
    if not (built / "build.json").is_file():
        raise SystemExit(f"{built}: no built base here (run without --from-cache to train it)")
    out = export_prebuilt(built, args.out, build_key(config))
    size = sum(p.stat().st_size for p in out.iterdir())
    if size > MAX_COMMITTED_BYTES:
        raise SystemExit(f"{out}: {size / 2**20:.1f} MiB is over the 25 MiB limit for the committed base")
    print(f"wrote {out} ({size / 2**20:.1f} MiB, key {build_key(config)})")


if __name__ == "__main__":
    main()
