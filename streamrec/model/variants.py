"""A/B variants: a user's bucket is a pure function of the user id, stable across runs and hosts;
each variant has its own model settings."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from streamrec.config import ModelConfig
from streamrec.model.model import ModelParams


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


# Model settings a variant may override (ModelParams.from_config's names).
VARIANT_SETTINGS = frozenset({
    "top_k", "half_life_events", "half_life_days", "event_weights", "exclude_purchased", "exclude_cart",
    "include_categories", "exclude_categories", "cold_start_events", "transition_weight", "transition_context",
})
DEFAULT_VARIANT = "default"


def parse_variants(text: str) -> list[tuple[str, float, dict[str, Any]]]:
    """``STREAMREC_VARIANTS`` -> [(name, share, overrides)], in the order given.

    ``{"A": {"share": 0.5}, "B": {"share": 0.5, "half_life_events": 2}}``; empty: one variant
    named "default" with no overrides. Raises ValueError with the offending part named.
    """
    if not text.strip():
        return [(DEFAULT_VARIANT, 1.0, {})]
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"STREAMREC_VARIANTS is not JSON: {exc}") from None
    if not isinstance(obj, dict) or not obj:
        raise ValueError('STREAMREC_VARIANTS must be a JSON object {"name": {"share": 0.5, ...}, ...}')
    out = []
    for name, spec in obj.items():
        if not isinstance(spec, dict):
            raise ValueError(f"variant {name!r}: expected an object of settings")
        unknown = set(spec) - VARIANT_SETTINGS - {"share"}
        if unknown:
            raise ValueError(f"variant {name!r}: unknown settings {sorted(unknown)}; "
                             f"allowed: share, {', '.join(sorted(VARIANT_SETTINGS))}")
        share = spec.get("share", 1.0)
        if isinstance(share, bool) or not isinstance(share, (int, float)) or share < 0:
            raise ValueError(f"variant {name!r}: share must be a number >= 0")
        out.append((str(name), float(share), {k: v for k, v in spec.items() if k != "share"}))
    if sum(s for _, s, _ in out) <= 0:
        raise ValueError("STREAMREC_VARIANTS: the shares sum to 0")
    return out


@dataclass(frozen=True)
class Variants:
    """The A/B variants of a configuration, each with its model settings."""

    shares: tuple[tuple[str, float], ...]
    params: Mapping[str, ModelParams]

    @classmethod
    def from_config(cls, config: ModelConfig) -> Variants:
        parsed = parse_variants(config.variants)
        try:
            params = {name: ModelParams.from_config(config, **overrides) for name, _, overrides in parsed}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"STREAMREC_VARIANTS: {exc}") from None
        return cls(tuple((name, share) for name, share, _ in parsed), params)

    @classmethod
    def single(cls, params: ModelParams) -> Variants:
        return cls(((DEFAULT_VARIANT, 1.0),), {DEFAULT_VARIANT: params})

    def for_user(self, user_id: str) -> tuple[str, ModelParams]:
        name = self.shares[0][0] if len(self.shares) == 1 else assign_variant(user_id, self.shares)
        return name, self.params[name]

    @property
    def history_size(self) -> int:
        """How many moving events the JVM keeps per user: enough for the variant that needs most."""
        return max(p.history_size for p in self.params.values())

    @property
    def moving_types(self) -> frozenset[str]:
        """Event types that move a user's vector in some variant (what the JVM remembers)."""
        return frozenset().union(*(p.moving_types for p in self.params.values()))
