"""Digit embeddings held apart (`fixed_digit_embeddings` of a base build).

A tiny base copies an id digit with an attention head that finds the digit's earlier occurrence
and writes its embedding back out; that only works if the ten digits' embeddings differ. Measured
(docs/demo.md): in every from-scratch build with spelled capitalized words the digits' tied
embeddings collapsed together (mean cosine 0.83-0.85 by step 300, against 0.58 in the committed
base) while the letters spread apart, and no id digit was ever copied. A digit is never
predictable before a copying head exists, so nothing pulls the digits apart, and without that
no copying head can form. Fixing them at distinct vectors breaks that circle: the ten rows are
set to orthogonal vectors of a trained embedding's norm and get no gradient, so a copying head
can form from the first step.
"""

from __future__ import annotations

from replica.errors import UserError

DIGITS = "0123456789"
# About the norm trained token embeddings reach in the demo base (0.7-1.0), so the fixed digits
# are neither drowned in the residual stream nor too small to be predicted with tied weights.
DIGIT_NORM = 1.0


def fix_digit_embeddings(model, tokenizer, seed: int) -> None:
    """Set the input embeddings of `0`-`9` to orthogonal vectors of norm `DIGIT_NORM` (seeded) and
    keep them there: their gradient is zeroed on every backward pass (tied weights: the output
    rows too). A tokenizer without single-token digits is an error."""
    import torch

    ids = [tokenizer.convert_tokens_to_ids(digit) for digit in DIGITS]
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise UserError("fixed_digit_embeddings: the tokenizer has no single token for each digit 0-9")
    weight = model.get_input_embeddings().weight
    generator = torch.Generator().manual_seed(seed)
    rows = torch.empty(len(ids), weight.shape[1])
    torch.nn.init.orthogonal_(rows, generator=generator)
    index = torch.tensor(ids, device=weight.device)
    with torch.no_grad():
        weight[index] = (rows * DIGIT_NORM).to(weight)
    weight.register_hook(lambda grad: grad.index_fill(0, index, 0.0))
