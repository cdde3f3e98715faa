"""Training throughput: a plain TRL SFTTrainer (defaults) vs replica's SFT stage, side by side,
then the wall time of training N = 1, 4, 8 contributors with the whole pipeline.

    # CPU, the tiny test base (a few minutes on 2 cores)
    python scripts/bench_train.py
    # CPU, a random 8M-parameter Qwen2 (more work per token), 3 interleaved rounds
    python scripts/bench_train.py --arch small --max-length 1024 --records 64 --repeats 3
    # GPU: the Qwen2.5-0.5B architecture with random weights, bf16, sequences up to 2048 tokens
    # (scripts/gpu_checks.sh runs this on a lent device, with the wheels it needs)
    python scripts/bench_train.py --arch qwen2.5-0.5b --max-length 2048 --records 512 --batch-size 8

Both sides train the same LoRA (same rank, targets, learning rate, batch size, max length,
precision) on the same mixed-length demonstrations, one after the other in this process.
"plain" is `SFTTrainer(model, args=SFTConfig(...), peft_config=...)` with TRL's defaults for
everything else (gradient checkpointing on, padded batches, random order); "plain-no-gc" is
the same with gradient checkpointing off, so the speed-up from checkpointing and from padding
are told apart; "replica" is `replica.train.sft.build_sft_trainer` with the run config's
defaults (length-grouped batches, no checkpointing) and "replica-packed" the same with
`sft.packing: true` (best-fit packing into padding-free rows, as many tokens per step).

Throughput counts real (non-pad) tokens per second over every optimizer step of one epoch, so
all sides count the same tokens; before it, each side runs `--warmup-steps` untimed steps in a
throwaway trainer (kernels loaded, allocator grown). Not dropping a first timed step instead:
with length grouping that step holds the longest batch, so the sides would be timed on different
records (docs/benchmarks.md). MFU uses the PaLM formula
(6N + 6·L·d·T_eff FLOPs per token, causal attention) against the device's dense bf16 peak;
with LoRA the frozen weights get no weight gradients, so the work done is nearer 4N than 6N.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402
from datasets import Dataset, Features, Json, List, Value  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from replica.config import load_config  # noqa: E402
from replica.model import load_tokenizer, resolve_device  # noqa: E402
from replica.train.context import build_context  # noqa: E402
from replica.train.lora import peft_lora_config  # noqa: E402
from replica.train.pipeline import run_training  # noqa: E402
from replica.train.sft import build_sft_trainer  # noqa: E402
from replica.train.stage import release_base  # noqa: E402

# Dense bf16 peak of the devices this was run on (vendor figures, no sparsity).
PEAK_BF16_FLOPS = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}

QWEN25_05B = dict(  # the published Qwen2.5-0.5B config; weights here are random
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
    num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
    rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
)  # fmt: skip

# A CPU-sized model with enough work per token that padding shows (~8M parameters).
SMALL = dict(
    vocab_size=512, hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
)  # fmt: skip

# =========================================================================== arguments


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=["tiny", "small", "qwen2.5-0.5b"], default="tiny")
    parser.add_argument("--records", type=int, default=96, help="demonstrations in the side-by-side run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=768, help="longest record, tokens")
    parser.add_argument("--min-length", type=int, default=48, help="shortest record, tokens (about)")
    parser.add_argument("--contributors", default="1,4,8", help="N values for the scaling run ('' skips it)")
    parser.add_argument("--per-contributor", type=int, default=16, help="demonstrations per contributor")
    parser.add_argument("--scale-steps", type=int, default=4, help="SFT and DPO steps per contributor")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1: CPU-time is exact)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all sides; the median is kept")
    parser.add_argument("--warmup-steps", type=int, default=1, help="untimed steps per side before timing")
    parser.add_argument("--sides", default="plain,plain-no-gc,replica,replica-packed")
    parser.add_argument("--workdir", default=None, help="default: a temporary directory")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


# =========================================================================== base model


def build_base(arch: str, workdir: Path) -> Path:
    """The tiny test base, or a random-weight Qwen2 (`small`, Qwen2.5-0.5B's shape) with its tokenizer."""
    from replica.bases.tiny import ensure_base

    build = yaml.safe_load((ROOT / "tests/fixtures/tiny_base.yaml").read_text())
    build["corpus"] = [str(ROOT / "tests/fixtures" / c) for c in build["corpus"]]
    build["cache_dir"] = str(ROOT / ".cache/bases")
    (workdir / "tiny_base.yaml").write_text(yaml.safe_dump(build))
    tiny = ensure_base(workdir / "tiny_base.yaml")
    if arch == "tiny":
        return tiny
    from transformers import Qwen2Config, Qwen2ForCausalLM

    target = workdir / f"{arch}-random"
    torch.manual_seed(0)
    shape = QWEN25_05B if arch == "qwen2.5-0.5b" else SMALL
    model = Qwen2ForCausalLM(Qwen2Config(**shape)).to(torch.bfloat16)
    model.save_pretrained(str(target))
    load_tokenizer(str(tiny)).save_pretrained(str(target))
    return target


# =========================================================================== data

SFT_FEATURES = Features(
    {"id": Value("string"), "contributor_id": Value("string"), "task_id": Value("string"),
     "messages": List(Json()), "tools": Json(), "record_hash": Value("string")}
)  # fmt: skip
PREF_FEATURES = Features(
    {"id": Value("string"), "contributor_id": Value("string"), "task_id": Value("string"),
     "prompt": List(Json()), "chosen": List(Json()), "rejected": List(Json()), "tools": Json(),
     "source": Value("string"), "record_hash": Value("string")}
)  # fmt: skip


def mixed_lengths(count: int, low: int, high: int, rng: random.Random) -> list[int]:
    """Long-tailed lengths like real demonstrations: most short, a few near the maximum."""
    return [int(min(high, max(low, rng.lognormvariate(0, 0.9) * (low + high) / 6))) for _ in range(count)]


def make_demonstrations(tokenizer, contributor: str, count: int, args, rng: random.Random) -> list[dict]:
    """Tool-calling chats from the fixture corpus, stretched with filler to mixed target lengths."""
    lines = (ROOT / "tests/fixtures/tiny_corpus.jsonl").read_text().splitlines()
    corpus = [json.loads(line) for line in lines if line.strip()]
    words = " ".join(m.get("content") or "" for c in corpus for m in c["messages"]).split()
    rows = []
    for index, target in enumerate(mixed_lengths(count, args.min_length, args.max_length, rng)):
        record = json.loads(json.dumps(corpus[index % len(corpus)]))
        base_len = len(
            tokenizer.apply_chat_template(record["messages"], tools=record.get("tools"))["input_ids"]
        )
        extra = max(0, target - base_len)
        filler = " ".join(rng.choice(words) for _ in range(extra // 2))  # ~2 tokens per word
        record["messages"][-1]["content"] = (record["messages"][-1].get("content") or "") + " " + filler
        rows.append(
            {"id": f"{contributor}-{index}", "contributor_id": contributor, "task_id": f"{contributor}-t{index}",
             "messages": record["messages"], "tools": record.get("tools"), "record_hash": f"{contributor}:{index}"}
        )  # fmt: skip
    return rows


def write_contributor(prepared: Path, contributor: str, rows: list[dict], heldout: int) -> None:
    """One contributor's prepared splits (docs/internals.md layout), with a few preference pairs."""
    Dataset.from_list(rows[heldout:], features=SFT_FEATURES).save_to_disk(
        str(prepared / contributor / "sft/train")
    )
    if heldout:
        Dataset.from_list(rows[:heldout], features=SFT_FEATURES).save_to_disk(
            str(prepared / contributor / "sft/heldout")
        )
    pairs = []
    for row in rows[: max(4, heldout)]:
        messages = row["messages"]
        user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        pairs.append(
            {**{k: row[k] for k in ("id", "contributor_id", "task_id", "tools", "record_hash")},
             "prompt": messages[: user + 1], "chosen": [messages[-1]],
             "rejected": [{"role": "assistant", "content": "No."}], "source": "pairwise"}
        )  # fmt: skip
    Dataset.from_list(pairs, features=PREF_FEATURES).save_to_disk(str(prepared / contributor / "pref/train"))


def write_run_config(workdir: Path, base: Path, prepared: Path, args, name: str, **sft) -> Path:
    raw = {
        "run_name": name,
        "output_dir": str(workdir / "runs"),
        "seed": args.seed,
        "model": {"name_or_path": str(base)},
        "data": {"prepared_dir": str(prepared)},
        "lora": {"r": 16, "alpha": 32},
        "sft": {"learning_rate": 2e-4, "batch_size": args.batch_size, "max_length": args.max_length,
                "logging_steps": 1, "save_steps": 10_000,
                **sft},
        "dpo": {"max_steps": args.scale_steps, "batch_size": 2, "max_length": args.max_length,
                "logging_steps": 1, "save_steps": 10_000},
    }  # fmt: skip
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# =========================================================================== side by side


class StepClock(TrainerCallback):
    """Wall and CPU time at the start of the first optimizer step and at the end of every step
    (CUDA synchronised, so times are real)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.cpu_times: list[float] = []

    def _tick(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        self.cpu_times.append(time.process_time())

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.times:
            self._tick()

    def on_step_end(self, args, state, control, **kwargs):
        self._tick()


def measure(trainer, flops_per_token: float, peak: float | None) -> dict:
    """Train once; real tokens/s over all steps, MFU, peak memory."""
    clock = StepClock()
    trainer.add_callback(clock)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    tokens = [e["num_tokens"] for e in trainer.state.log_history if "num_tokens" in e]
    steps = len(clock.times) - 1
    seconds = clock.times[-1] - clock.times[0]
    cpu_seconds = clock.cpu_times[-1] - clock.cpu_times[0]
    real = float(tokens[-1])  # num_tokens is cumulative: every step's real tokens
    rate = real / seconds if seconds > 0 else float("nan")
    return {
        "steps": steps,
        "tokens": real,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(rate, 1),
        # Tokens per second of this process's own CPU time: on a shared CPU machine the honest
        # measure of work (other processes' load does not count); meaningless on GPU.
        "tokens_per_cpu_s": round(real / cpu_seconds, 1) if cpu_seconds > 0 else None,
        "mfu": round(rate * flops_per_token / peak, 4) if peak else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.cuda.is_available()
        else None,
    }


def flops_per_token(model, lengths: list[int]) -> float:
    """PaLM-style training FLOPs per token: 6 x matmul params + causal attention over each record."""
    config = model.config
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    t_eff = sum(n * n for n in lengths) / sum(lengths)  # mean context a token attends over, x2
    head_dim = config.hidden_size // config.num_attention_heads
    return 6 * matmul + 6 * config.num_hidden_layers * config.num_attention_heads * head_dim * t_eff


def side_by_side(base: Path, workdir: Path, args) -> dict:
    prepared = workdir / "prepared-sbs"
    tokenizer = load_tokenizer(str(base))
    rng = random.Random(args.seed)
    rows = make_demonstrations(tokenizer, "bench", args.records, args, rng)
    write_contributor(prepared, "bench", rows, heldout=0)  # throughput only: no held-out pass
    lengths = [len(tokenizer.apply_chat_template(r["messages"], tools=r["tools"])["input_ids"]) for r in rows]
    lengths = [min(n, args.max_length) for n in lengths]
    # Packed rows hold max_length tokens: pick the row count that carries as many tokens per
    # optimizer step as the padded sides' batch of records (same optimisation, fair throughput).
    packed_batch = max(1, round(args.batch_size * (sum(lengths) / len(lengths)) / args.max_length))
    config = load_config(write_run_config(workdir, base, prepared, args, "sbs", epochs=1))
    ctx = build_context(config)
    choice = ctx.choice
    peak = next(
        (
            v
            for k, v in PEAK_BF16_FLOPS.items()
            if choice.device == "cuda" and k in torch.cuda.get_device_name()
        ),
        None,
    )
    ctx.base_model()  # load once for every side
    train = Dataset.load_from_disk(str(prepared / "bench/sft/train"))
    lengths = [
        len(tokenizer.apply_chat_template(r["messages"], tools=r["tools"])["input_ids"]) for r in train
    ]
    trained = [min(n, args.max_length) for n in lengths]  # what the trainers see, after truncation
    fpt = flops_per_token(ctx.base_model(), trained)
    results = {"device": torch.cuda.get_device_name() if choice.device == "cuda" else "cpu",
               "dtype": str(choice.dtype), "records": len(train), "mean_length": sum(trained) / len(trained),
               "mean_length_untruncated": sum(lengths) / len(lengths),
               "truncated_records": sum(n > args.max_length for n in lengths),
               "max_length": args.max_length, "batch_size": args.batch_size, "packed_batch_size": packed_batch,
               "flops_per_token": fpt, "peak_flops": peak, "sides": {}}  # fmt: skip
    runs: dict[str, list[dict]] = {side: [] for side in args.sides.split(",")}
    default_sft = config.sft.model_copy()  # each replica side starts from the run config's own
    if args.warmup_steps > 0:  # untimed: first-use costs (kernel loading, allocator growth) land here
        for side in runs:
            trainer = make_side(side, ctx, default_sft, train, packed_batch, workdir, args, args.warmup_steps)
            trainer.train()
            release_base(ctx, trainer)
    for round_index in range(args.repeats):  # sides interleaved, so load drifts hit all alike
        for side in runs:
            trainer = make_side(side, ctx, default_sft, train, packed_batch, workdir, args)
            runs[side].append(measure(trainer, fpt, peak))
            print(f"round {round_index + 1}/{args.repeats}", side, runs[side][-1], flush=True)
            release_base(ctx, trainer)
    for side, measured in runs.items():
        key = "tokens_per_cpu_s" if choice.device == "cpu" else "tokens_per_s"
        best = sorted(measured, key=lambda m: m[key])[len(measured) // 2]  # the median run
        results["sides"][side] = {
            **best,
            "tokens_per_s_runs": [m["tokens_per_s"] for m in measured],
            "tokens_per_cpu_s_runs": [m["tokens_per_cpu_s"] for m in measured],
        }
    plain = results["sides"].get("plain", {})
    for side in results["sides"].values():
        for key in ("tokens_per_s", "tokens_per_cpu_s"):
            if plain.get(key) and side.get(key):
                side[f"ratio_vs_plain_{key}"] = round(side[key] / plain[key], 2)
    return results


def make_side(
    side: str, ctx, default_sft, train, packed_batch: int, workdir: Path, args, max_steps: int = -1
):
    """A fresh trainer for one side of the comparison, on the shared base model (one epoch, or max_steps)."""
    torch.manual_seed(args.seed)
    if side.startswith("replica"):
        # replica: the run config's defaults (length-grouped padded batches);
        # replica-packed: best-fit packing into padding-free rows (pays off with varlen attention).
        update = {"packing": True, "batch_size": packed_batch} if side == "replica-packed" else {}
        ctx.config.sft = default_sft.model_copy(update={**update, "max_steps": max_steps})
        return build_sft_trainer(ctx, "bench")[0]
    return plain_trainer(ctx, train, workdir / side, args, side == "plain", max_steps)


def plain_trainer(
    ctx, train, output_dir: Path, args, gradient_checkpointing: bool, max_steps: int = -1
) -> SFTTrainer:
    """TRL's SFTTrainer with its defaults; only what the experiment fixes is set."""
    sft_args = SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=args.batch_size,
        max_length=args.max_length,
        num_train_epochs=1,
        max_steps=max_steps,
        learning_rate=2e-4,
        bf16=ctx.choice.bf16,
        use_cpu=ctx.choice.device == "cpu",
        gradient_checkpointing=gradient_checkpointing,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        disable_tqdm=True,
    )
    return SFTTrainer(
        model=ctx.base_model(),
        args=sft_args,
        train_dataset=train,
        processing_class=ctx.tokenizer,
        peft_config=peft_lora_config(ctx.config.lora),
    )


# =========================================================================== N contributors


def scaling(base: Path, workdir: Path, args) -> dict:
    """Wall time of `replica train` (SFT + DPO, publish, registry) for N contributors."""
    counts = [int(n) for n in args.contributors.split(",") if n.strip()]
    if not counts:
        return {}
    prepared = workdir / "prepared-scale"
    tokenizer = load_tokenizer(str(base))
    rng = random.Random(args.seed + 1)
    names = [f"expert-{i}" for i in range(max(counts))]
    for name in names:
        write_contributor(
            prepared, name, make_demonstrations(tokenizer, name, args.per_contributor, args, rng), 2
        )
    results = {}
    for n in counts:
        path = write_run_config(workdir, base, prepared, args, f"scale-{n}", max_steps=args.scale_steps)
        config = load_config(path, [f"data.contributors={json.dumps(names[:n])}"])
        started = time.perf_counter()
        summary = run_training(config)
        total = time.perf_counter() - started
        trained = sum(o.seconds for o in summary.outcomes)
        results[n] = {"total_s": round(total, 2), "stages_s": round(trained, 2),
                      "setup_s": round(total - trained, 2), "per_contributor_s": round(total / n, 2)}  # fmt: skip
        print(f"N={n}", results[n], flush=True)
    return results


# =========================================================================== report


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_train-"))
    workdir.mkdir(parents=True, exist_ok=True)
    base = build_base(args.arch, workdir)
    print(f"base: {base} ({args.arch}); device: {resolve_device(load_config_stub(base)).device}", flush=True)
    report: dict = {"arch": args.arch, "versions": library_versions()}
    # Written after each part, so a run stopped during the scaling part keeps its side-by-side figures.
    report["side_by_side"] = side_by_side(base, workdir, args)
    write_report(report, args.out)
    report["scaling"] = scaling(base, workdir, args)
    write_report(report, args.out)
    print(json.dumps(report, indent=2))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import version

    versions = {name: version(name) for name in ("transformers", "trl", "peft", "accelerate", "datasets")}
    return {"torch": torch.__version__, "cuda": torch.version.cuda, **versions}


def write_report(report: dict, out: str | None) -> None:
    if out:
        Path(out).write_text(json.dumps(report, indent=2))


def load_config_stub(base: Path):
    from replica.config import ModelConfig

    return ModelConfig(name_or_path=str(base))


if __name__ == "__main__":
    main()
