"""Held-out scoring (fidelity NLL, preference log-probs) with and without the shared-prefix cache,
side by side in one run, on a run's real base and a trained adapter.

    python scripts/bench_likelihood.py configs/smol.yaml --contributor alice --stage sft

Scores the contributor's held-out demonstrations (`sft/heldout`, assistant tokens, the training
template) under the adapter, once as a plain forward pass over every whole row and once with the
rows' common prefix (system prompt + tool schemas) computed once and the vocabulary projected only
where a token is scored (`replica.eval.likelihood.score_rows`). Prints wall and CPU seconds per
side, their ratios, and the largest relative difference between the two sides' per-row NLL.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    from replica.eval.inputs import scored_replica_parser

    args = scored_replica_parser(__doc__.split("\n\n")[0]).parse_args(argv)

    from replica.config import load_config
    from replica.eval import inputs
    from replica.eval.likelihood import demonstration_rows, score_rows
    from replica.templates import training_chat_template

    config = load_config(args.config, args.overrides)
    tokenizer, model, name = inputs.load_scored_replica(config, args.contributor, args.stage)
    examples = inputs.load_rows(config.prepared_dir, args.contributor, "sft/heldout")[: args.limit]
    rows = demonstration_rows(tokenizer, examples, training_chat_template(tokenizer))
    tokens = sum(len(ids) for ids, _ in rows)
    print(f"{len(rows)} held-out demonstrations of {args.contributor}, {tokens:,} tokens, adapter {name}")

    sides = {}
    for label, share in (
        ("a. plain forward, every position projected", False),
        ("b. shared prefix + scored positions", True),
    ):
        wall, cpu = time.perf_counter(), time.process_time()
        scores = score_rows(model, rows, name, tokenizer.pad_token_id, share_prefix=share)
        sides[label] = (time.perf_counter() - wall, time.process_time() - cpu, scores)
    (a_wall, a_cpu, a), (b_wall, b_cpu, b) = sides.values()
    print("| side | wall s | CPU s | speedup wall / CPU |\n| --- | ---: | ---: | ---: |")
    for label, (wall, cpu, _) in sides.items():
        print(f"| {label} | {wall:.1f} | {cpu:.1f} | {a_wall / wall:.2f}x / {a_cpu / cpu:.2f}x |")
    worst = max(abs(x.nll - y.nll) / max(abs(x.nll), 1e-9) for x, y in zip(a, b, strict=True))
    same_tokens = all(x.tokens == y.tokens for x, y in zip(a, b, strict=True))
    print(f"largest relative NLL difference per row: {worst:.2e}; scored tokens identical: {same_tokens}")


if __name__ == "__main__":
    from replica.errors import exit_on_user_error

    exit_on_user_error(main)
