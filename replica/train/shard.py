"""`--shard K/N`: a deterministic 1/N of the contributors, so N independent jobs cover them all.

Assignment hashes the contributor id (not its position in a list), so adding a contributor
never moves the others between shards; K is 0-based like Slurm's SLURM_ARRAY_TASK_ID.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from replica.errors import UserError


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def owns(self, contributor: str) -> bool:
        """Whether this shard trains `contributor`."""
        digest = hashlib.sha256(contributor.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


def parse_shard(text: str) -> Shard:
    """Parse `K/N` with 0 <= K < N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise UserError(f"--shard {text!r}: expected K/N, e.g. 0/4 (K counts from 0)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text!r}: expected 0 <= K < N and N >= 1, found K={index}, N={count}")
    return Shard(index, count)


def select_shard(contributors: list[str], shard: Shard | None) -> list[str]:
    """The contributors this shard trains, in the given order."""
    return list(contributors) if shard is None else [c for c in contributors if shard.owns(c)]
