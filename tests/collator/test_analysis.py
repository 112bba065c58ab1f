"""The analysis text: characterisations and the capped diff."""

from __future__ import annotations

import numpy as np

from swarm_collator.analysis import MAX_DIFF_LINES, characterise, characterise_code, excerpt_diff, explain
from swarm_collator.candidate import Candidate
from swarm_collator.clustering import collate

from .samples import FIB_CLOSED_FORM, FIB_LOOP, FIB_MEMO, FIB_RECURSIVE, PROSE_SORT_A


def test_recursive_code() -> None:
    text = characterise_code(FIB_RECURSIVE)
    assert "defines fib()" in text
    assert "recursive (fib)" in text
    assert "no imports" in text
    assert "4 lines" in text


def test_loop_code() -> None:
    text = characterise_code(FIB_LOOP)
    assert "1 loop" in text
    assert "recursive" not in text


def test_memoised_code() -> None:
    text = characterise_code(FIB_MEMO)
    assert "memoised with @lru_cache" in text
    assert "imports functools.lru_cache" in text


def test_memo_dict_is_noticed() -> None:
    code = "memo = {}\n\ndef f(n):\n    if n in memo:\n        return memo[n]\n    memo[n] = n\n    return n\n"
    assert "memo table 'memo'" in characterise_code(code)


def test_closed_form_is_straight_line() -> None:
    text = characterise_code(FIB_CLOSED_FORM)
    assert "straight-line" in text
    assert "imports math" in text


def test_unparsable_and_prose() -> None:
    assert characterise_code("def f(:\n  pass\n").startswith("code does not parse (line 1)")
    assert characterise(Candidate(id="p", text=PROSE_SORT_A)) == "prose only, no code; 18 words"


def test_diff_is_capped() -> None:
    a = Candidate(id="a", text="", code="\n".join(f"x{i} = {i}" for i in range(100)))
    b = Candidate(id="b", text="", code="\n".join(f"y{i} = {i}" for i in range(100)))
    diff = excerpt_diff(a, b)
    assert len(diff) == MAX_DIFF_LINES + 1
    assert diff[-1].startswith("... (")


def _two_clusters() -> tuple[list[Candidate], str]:
    candidates = [
        Candidate(id="c1", text="", code=FIB_RECURSIVE),
        Candidate(id="c2", text="", code=FIB_LOOP),
        Candidate(id="c3", text="", code=FIB_RECURSIVE),
    ]
    vectors = np.asarray([[1, 0], [0, 1], [1, 0]], dtype=np.float32)
    return candidates, explain(candidates, collate(vectors, 0.9, 0.5), 0.9)


def test_explain_two_clusters() -> None:
    _, text = _two_clusters()
    lines = text.splitlines()
    assert lines[0].startswith("3 responses in 2 clusters at cosine similarity >= 0.90; consensus reached")
    assert lines[1].startswith("Cluster 0 (2: c1, c3; representative c1, cohesion 1.00): defines fib()")
    assert lines[2].startswith("Cluster 1 (1: c2; representative c2")
    assert "Diff between the representatives of clusters 0 and 1 (c1 -> c2):" in text
    assert "--- c1" in text and "+++ c2" in text
    assert "+    for _ in range(n):" in text


def test_explain_is_deterministic() -> None:
    assert _two_clusters()[1] == _two_clusters()[1]


def test_explain_single_cluster_has_no_diff() -> None:
    candidates = [Candidate(id="only", text="", code=FIB_LOOP)]
    text = explain(candidates, collate(np.asarray([[1.0, 0.0]], dtype=np.float32), 0.9, 0.5), 0.9)
    assert "1 response in 1 cluster" in text
    assert "consensus not reached" in text
    assert "no competing cluster" in text


def test_too_deeply_nested_code_does_not_parse() -> None:
    assert characterise_code("not " * 10000).startswith("code does not parse; ")
    assert characterise_code("x = " + "+".join(["1"] * 3000)).startswith("code does not parse; ")
    assert "straight-line" in characterise_code("x = " + "+".join(["1"] * 600))
