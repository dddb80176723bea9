"""A/B variants: a user's bucket is a pure function of the user id, stable across runs and hosts."""

from __future__ import annotations

import hashlib
from typing import Sequence


def bucket(user_id: str, buckets: int = 10_000) -> int:
    # Python's hash() is salted per process; a cryptographic digest is the same on every machine.
    digest = hashlib.blake2b(user_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


def assign_variant(user_id: str, shares: Sequence[tuple[str, float]]) -> str:
    """The variant of ``user_id`` given (name, share) pairs; shares are normalised to sum to 1."""
    if not shares:
        raise ValueError("no variants configured")
    total = sum(s for _, s in shares)
    if total <= 0 or any(s < 0 for _, s in shares):
        raise ValueError(f"variant shares must be >= 0 and sum to > 0, got {list(shares)}")
    point = bucket(user_id) / 10_000 * total
    upper = 0.0
    for name, share in shares:
        upper += share
        if point < upper:
            return name
    return shares[-1][0]
