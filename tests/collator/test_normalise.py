"""Normalisation: cosmetic differences vanish, structure stays."""

from __future__ import annotations

import re

import pytest

from swarm_collator.candidate import Candidate
from swarm_collator.normalise import canonical_code, strip_comments_and_docstrings

from .samples import FIB_LOOP, FIB_LOOP_DOCUMENTED, FIB_RECURSIVE, FIB_RECURSIVE_RENAMED


def test_strip_removes_comments_and_docstrings_but_keeps_names() -> None:
    code = (
        '"""Module doc."""\n\nclass A:\n    """Doc."""\n\n'
        '    def f(self, count):  # note\n        """Doc."""\n        return count\n'
    )
    stripped = strip_comments_and_docstrings(code)
    assert "doc" not in stripped.lower()
    assert "note" not in stripped
    assert "count" in stripped


def test_docstring_only_body_stays_valid_python() -> None:
    stripped = strip_comments_and_docstrings('def f():\n    """Only a docstring."""\n')
    assert stripped == "def f():\n    pass"


def test_cosmetic_variants_share_one_canonical_form() -> None:
    renamed = re.sub(r"\bn\b", "num", FIB_RECURSIVE)
    assert renamed != FIB_RECURSIVE
    assert canonical_code(FIB_RECURSIVE) == canonical_code(renamed)
    assert canonical_code(FIB_LOOP) == canonical_code(FIB_LOOP_DOCUMENTED)


def test_canonical_form_keeps_function_names_and_structure() -> None:
    canonical = canonical_code(FIB_RECURSIVE_RENAMED)
    assert "def fib(v0):" in canonical
    assert "fib(v0 - 1)" in canonical
    assert "else" in canonical


def test_globals_are_not_renamed() -> None:
    canonical = canonical_code("total = 0\n\ndef add(x):\n    global total\n    total += x\n")
    assert "global total" in canonical
    assert "total += v0" in canonical


def test_unparsable_code_falls_back_to_raw_text() -> None:
    broken = "def f(:\n    return  1  # comment\n"
    assert canonical_code(broken) == broken.strip()
    assert strip_comments_and_docstrings(broken) == broken.strip()


def test_candidate_embeds_code_when_present_else_text() -> None:
    with_code = Candidate(id="c1", text="Here you go: ...", code=FIB_LOOP)
    prose = Candidate(id="c2", text="  Use sorted().  ", code="   ")
    assert with_code.embedding_input == canonical_code(FIB_LOOP)
    assert prose.embedding_input == "Use sorted()."
    assert not prose.has_code


@pytest.mark.parametrize("deep", ["x = " + "+".join(["1"] * 3000), "not " * 10000, "x = " + "+".join(["1"] * 600)])
def test_too_deeply_nested_code_falls_back_to_the_raw_text(deep: str) -> None:
    assert canonical_code(deep) == deep.strip()
    assert strip_comments_and_docstrings(deep) == deep.strip()
