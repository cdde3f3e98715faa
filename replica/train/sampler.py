"""Length-grouped batching whose order is a function of (seed, epoch) alone, so resume is exact.

transformers' training LengthGroupedSampler draws its permutation from the global torch RNG at
the start of each epoch. After a crash, the resumed run re-creates the sampler with a different
RNG state, so the rest of the interrupted epoch sees other batches than an uninterrupted run
would. Seeding a private generator per epoch (the Trainer calls `set_epoch`) fixes that.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """LengthGroupedSampler with `set_epoch`: epoch e uses a generator seeded with seed + e."""

    def __init__(self, *args, seed: int, **kwargs) -> None:
        super().__init__(*args, generator=torch.Generator(), **kwargs)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer before each epoch (also the resumed one)."""
        self.generator.manual_seed(self.seed + epoch)


def resumable_sampler(sampler, seed: int):
    """Swap a training LengthGroupedSampler for the epoch-seeded one; leave other samplers alone."""
    if type(sampler) is not LengthGroupedSampler:
        return sampler
    return EpochSeededLengthGroupedSampler(sampler.batch_size, lengths=sampler.lengths, seed=seed)
