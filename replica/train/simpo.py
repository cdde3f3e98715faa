"""Reference-free preference training (SimPO) for the DPO stage, with TRL's CPOTrainer.

`dpo.loss_type: simpo` trains the SFT adapter on the preference pairs with SimPO's
length-normalised margin loss (CPOTrainer with `loss_type="simpo"`, `cpo_alpha=0`): no reference
policy at all, so no frozen adapter copy and no reference forward passes. TRL 1.16's DPOTrainer
has no reference-free loss; CPOTrainer lives in `trl.experimental`.

CPOTrainer renders conversational pairs without per-example tool schemas, so the pairs are
rendered here first (prompt with its tools, then each completion), as DPOTrainer would.
"""

from __future__ import annotations

from datasets import Dataset, Features, Value
from transformers import PreTrainedTokenizerBase
from trl.experimental.cpo import CPOConfig, CPOTrainer

from replica.train.args import common_args
from replica.train.context import TrainContext


def render_pairs(dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Conversational pairs -> text pairs: the prompt with tools and generation prompt, completions after it."""

    def render(example: dict) -> dict:
        tools = example.get("tools") or None
        prompt = tokenizer.apply_chat_template(
            example["prompt"], tools=tools, tokenize=False, add_generation_prompt=True
        )
        out = {"prompt": prompt}
        for key in ("chosen", "rejected"):
            full = tokenizer.apply_chat_template(
                example["prompt"] + example[key], tools=tools, tokenize=False
            )
            out[key] = full[len(prompt) :] if full.startswith(prompt) else full
        return out

    # New text columns replace the Json-typed ones: name their type, or map keeps List(Json).
    features = Features({key: Value("string") for key in ("prompt", "chosen", "rejected")})
    return dataset.map(render, remove_columns=dataset.column_names, features=features)


def build_simpo_trainer(ctx: TrainContext, model, contributor: str, train: Dataset, heldout: Dataset | None):
    """A CPOTrainer running SimPO on the SFT adapter (`model`, a trainable PeftModel)."""
    dpo = ctx.config.dpo
    args = CPOConfig(
        **common_args(
            dpo, ctx.choice, ctx.checkpoint_dir(contributor, "dpo"), ctx.config.seed, heldout is not None
        ),
        beta=dpo.beta,
        loss_type="simpo",
        cpo_alpha=0.0,  # pure SimPO: no extra SFT term
        simpo_gamma=dpo.simpo_gamma,
    )
    return CPOTrainer(
        model=model,
        args=args,
        train_dataset=render_pairs(train, ctx.tokenizer),
        eval_dataset=render_pairs(heldout, ctx.tokenizer) if heldout is not None else None,
        processing_class=ctx.tokenizer,
    )
