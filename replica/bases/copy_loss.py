"""Pretraining loss that weights the copied values (`pretrain.copy_weight` of a base build).

In a support-desk conversation almost every token is predictable from the format (JSON keys,
tool names, stock phrases); the few that only the context can predict are the values a task
reuses: an id, a street name, a status or an amount given earlier (replica/copy_values.py).
Measured on the committed tiny base (docs/demo.md): its id-copying attention head finds a ticket
id's source but, for the second digit, attends instead to the `close_ticket` name in the same
call. Those tokens are about 3% of a conversation's tokens, so plain pretraining barely corrects
such a head; weighting them makes each a stronger lesson without adding data or steps. (Measured:
weight 10 for 150 steps brought every other id digit to 100% but not that one; docs/demo.md.)
"""

from __future__ import annotations

from collections.abc import Iterable

from replica.copy_values import DEFAULT_COPY_KINDS, copied_token_mask


def copy_weighted_trainer(weight: float, kinds: Iterable[str] = DEFAULT_COPY_KINDS, **kwargs):
    """TRL's SFTTrainer whose loss weights each token of a copied value of `kinds` `weight` times
    (1: the plain mean next-token loss), normalized by the number of scored tokens as TRL's own is."""
    import torch
    from trl import SFTTrainer

    class CopyWeightedSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
            logits = outputs.logits[:, :-1].float()
            targets = labels[:, 1:]
            scored = targets != -100
            per_token = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), targets.masked_fill(~scored, 0), reduction="none"
            )
            weights = copy_weights(self.processing_class, inputs["input_ids"], weight, kinds)[:, 1:]
            count = scored.sum() if num_items_in_batch is None else num_items_in_batch
            loss = (per_token * weights * scored).sum() / torch.as_tensor(count).clamp(min=1)
            return (loss, outputs) if return_outputs else loss

    return CopyWeightedSFTTrainer(**kwargs)


def copy_weights(tokenizer, input_ids, weight: float, kinds: Iterable[str] = DEFAULT_COPY_KINDS):
    """A float tensor shaped like `input_ids`: `weight` on the tokens of copied values, else 1."""
    import torch

    masks = [copied_token_mask(tokenizer, row, kinds) for row in input_ids.tolist()]
    copied = torch.tensor(masks, dtype=torch.bool, device=input_ids.device)
    return 1.0 + (weight - 1.0) * copied.float()
