"""What verify found: per table the rows expected, found, missing, extra, doubled, stale or different,
the dead letters per code, and up to MAX_EXAMPLES example lines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

MAX_EXAMPLES = 20


@dataclass
class TableCheck:
    expected: int = 0
    found: int = 0
    missing: int = 0
    extra: int = 0
    doubled: int = 0
    stale: int = 0
    different: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.doubled or self.stale or self.different)


@dataclass
class DeadLetterCheck:
    expected: dict[str, int] = field(default_factory=dict)  # per error code
    found: dict[str, int] = field(default_factory=dict)
    missing: int = 0  # a bad record of the topic without its dead letter
    unexpected: int = 0  # a dead letter no record of the topic explains
    duplicates: int = 0  # the same dead letter more than once (allowed: the DLQ is at-least-once)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected)


@dataclass
class Report:
    topic: str
    partitions: int = 0
    records: int = 0
    valid_events: int = 0
    users: int = 0
    events: TableCheck = field(default_factory=TableCheck)
    recommendations: TableCheck = field(default_factory=TableCheck)
    dead_letters: Optional[DeadLetterCheck] = None
    warnings: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    attempts: int = 1
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.events.ok and self.recommendations.ok and (self.dead_letters is None or self.dead_letters.ok)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def _example(self, text: str) -> None:
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(text)
