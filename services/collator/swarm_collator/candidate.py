"""The collator's own view of a candidate, so the pure modules never depend on protobuf."""

from __future__ import annotations

from dataclasses import dataclass

from .normalise import canonical_code


@dataclass(frozen=True)
class Candidate:
    """One response: the reply text and the program extracted from it (may be empty)."""

    id: str
    text: str
    code: str = ""
    behaviour: str = ""

    @property
    def has_code(self) -> bool:
        return bool(self.code.strip())

    @property
    def source(self) -> str:
        """What the analysis shows and diffs: the program when there is one, else the prose."""
        return self.code if self.has_code else self.text

    @property
    def embedding_input(self) -> str:
        """Code is canonicalised so that cosmetic differences do not split a cluster; prose is used as is."""
        return canonical_code(self.code) if self.has_code else self.text.strip()
