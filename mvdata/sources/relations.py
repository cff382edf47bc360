"""Verdicts of named relations counted over the frames of a dataset: what ``mvdata inspect
--check`` keeps for each test it runs on the scans (the landmark layout, the file axes, the
texture orientation). Hand-written: a few counters per (group, relation), nothing a library
would add."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RelationTally"]


@dataclass
class RelationTally:
    """Verdicts of named relations counted over many frames, per group (a landmark naming
    scheme, or a texture orientation): how many frames each relation held, failed or could not
    tell, and the first file it failed on."""

    relations: dict[str, str]
    frames: Counter[str] = field(default_factory=Counter)
    held: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: Counter[tuple[str, str]] = field(default_factory=Counter)
    undetermined: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (group, relation) -> the first file on which the relation failed.
    first_failure: dict[tuple[str, str], str] = field(default_factory=dict)
    #: group -> the frames on which every relation tested held.
    all_held: Counter[str] = field(default_factory=Counter)

    def add_verdicts(self, group: str, where: str, verdicts: dict[str, bool | None]) -> None:
        """Count one frame's verdicts under ``group`` (``where`` names its file)."""
        self.frames[group] += 1
        if verdicts and all(v is True for v in verdicts.values()):
            self.all_held[group] += 1
        for relation, verdict in verdicts.items():
            key = (group, relation)
            if verdict is None:
                self.undetermined[key] += 1
            elif verdict:
                self.held[key] += 1
            else:
                self.failed[key] += 1
                self.first_failure.setdefault(key, where)

    def groups(self) -> list[str]:
        """The groups seen, in a stable order."""
        return sorted(self.frames)

    def disagreeing(self, group: str) -> list[str]:
        """The relations that failed on more frames of ``group`` than they held on: what a
        wrong convention looks like (one odd scan fails a relation or two, not most of them)."""
        return [r for r in self.relations if self.failed[(group, r)] > self.held[(group, r)]]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready counts: group -> frames, frames on which every relation held, and
        relation -> held / failed / undetermined / first file it failed on (relations tested on
        no frame of the group are left out)."""
        out: dict[str, Any] = {}
        for group in self.groups():
            rels: dict[str, Any] = {}
            for relation in self.relations:
                key = (group, relation)
                counts = (self.held[key], self.failed[key], self.undetermined[key])
                if sum(counts):
                    rels[relation] = {
                        "held": counts[0],
                        "failed": counts[1],
                        "undetermined": counts[2],
                        "first_failure": self.first_failure.get(key),
                    }
            out[group] = {
                "frames": self.frames[group],
                "all_held": self.all_held[group],
                "relations": rels,
            }
        return out
