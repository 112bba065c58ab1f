"""Finding tests in prose and HumanEval-style tasks."""

from __future__ import annotations

from swarm_assessor.tests_from_task import call_the_entry_point, tests_from_task as find_tests

HUMANEVAL = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)
    True
    """
'''


def test_humaneval_doctests() -> None:
    tests = find_tests(HUMANEVAL)
    assert [t.name for t in tests] == [
        "doctest 1: has_close_elements([1.0, 2.0, 3.0], 0.5) == False",
        "doctest 2: has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3) == True",
    ]
    assert all(t.kind == "doctest" for t in tests)
    assert tests[1].want == "True"


def test_prose_with_fenced_asserts_and_dedupe() -> None:
    task = (
        "Write `add(a, b)`.\n\n>>> add(1, 2)\n3\n\n```python\nassert add(1, 2) == 3\n"
        "assert add(-1, 1) == 0\nassert add(-1, 1) == 0\nassert add(\n    2, 2\n) == 4\n```\n"
    )
    tests = find_tests(task)
    assert [t.name for t in tests] == [
        "doctest 1: add(1, 2) == 3",
        "assert 2: add(-1, 1) == 0",
        "assert 3: add(2, 2) == 4",
    ]


def test_empty_expected_output_and_exceptions() -> None:
    task = ">>> x = setup()\n>>> check(x)\nTraceback (most recent call last):\n    ...\nValueError: bad\n"
    tests = find_tests(task)
    assert tests[0].name == "doctest 1: x = setup()"
    assert tests[0].want == ""
    assert tests[1].exc_msg is not None
    assert tests[1].name == "doctest 2: check(x) raises ValueError"


def test_no_tests_in_plain_prose() -> None:
    assert find_tests("Write a program that prints the primes below 100.") == []


def test_inconsistent_indentation_is_tolerated() -> None:
    task = "Example:\n    >>> f(1)\n    2\n\nAnother:\n  >>> f(2)\n  3\n"
    assert len(find_tests(task)) == 2


def test_checks_stated_in_prose_become_asserts() -> None:
    task = "Write fib(n) returning the n-th Fibonacci number (fib(0) == 0, fib(1) == 1)."
    assert [t.source for t in find_tests(task)] == ["assert fib(0) == 0", "assert fib(1) == 1"]


def test_prose_definitions_with_variables_are_not_tests() -> None:
    task = "By definition fib(n) == fib(n - 1) + fib(n - 2), and words(text) == the list of words."
    assert find_tests(task) == []


def test_a_prose_check_restating_a_doctest_counts_once() -> None:
    task = "fib(10) == 55 as below.\n\n>>> fib(10)\n55\n"
    assert len(find_tests(task)) == 1


def test_examples_stated_with_arrows_and_words_become_asserts() -> None:
    task = """Examples:
    digitSum("abAB") => 131
    will_it_fly([1, 2], 5) ➞ False
    is_simple_power(1, 4) => true
    decimal_to_binary(15)   # returns "db1111db"
    check_dict_case({"a": "apple"}) should return True.
    intersection((1, 2), (2, 3)) ==> "NO"
    """
    assert [t.source for t in find_tests(task)] == [
        "assert digitSum('abAB') == 131",
        "assert will_it_fly([1, 2], 5) == False",
        "assert is_simple_power(1, 4) == True",
        'assert decimal_to_binary(15) == "db1111db"',
        "assert check_dict_case({'a': 'apple'}) == True",
        'assert intersection((1, 2), (2, 3)) == "NO"',
    ]


def test_arithmetic_after_an_arrow_is_an_explanation_not_a_value() -> None:
    task = 'fruit_distribution("5 apples and 6 oranges", 19) ->19 - 5 - 6 = 8'
    assert find_tests(task) == []


def test_an_assert_written_with_a_prose_arrow_becomes_a_real_assert() -> None:
    task = """For example:
    assert list_sort(["aa", "a", "aaa"]) => ["aa"]
    assert list_sort(["ab", "a"]) == ["ab"]
    """
    assert [t.source for t in find_tests(task)] == [
        "assert list_sort(['ab', 'a']) == ['ab']",
        "assert list_sort(['aa', 'a', 'aaa']) == [\"aa\"]",
    ]


def test_an_example_calling_a_name_that_exists_nowhere_calls_the_one_function() -> None:
    task = '''def sorted_list_sum(lst):
    """Sort by length.
    For example:
    assert list_sort(["aa", "a", "aaa"]) => ["aa"]
    assert len(["a"]) == 1
    """
'''
    tests = call_the_entry_point(find_tests(task), task, ["sorted_list_sum"])
    assert [t.source for t in tests] == [
        "assert len(['a']) == 1",
        "assert sorted_list_sum(['aa', 'a', 'aaa']) == ['aa']",
    ]
    assert "sorted_list_sum" in tests[1].name
    # Two functions: which one the example meant is unknown, so it is left alone.
    two = task + "\\n\\ndef helper(x):\\n    return x\\n"
    assert call_the_entry_point(find_tests(two), two, ["sorted_list_sum", "helper"]) == find_tests(two)


def test_a_doctest_comparison_without_output_states_that_it_holds() -> None:
    task = '''def count_nums(arr):
    """
    >>> count_nums([]) == 0
    >>> count_nums([1, 1, 2]) == 3
    >>> print_it([1])
    """
'''
    tests = find_tests(task)
    assert [(t.source, t.want) for t in tests] == [
        ("count_nums([]) == 0", "True"),
        ("count_nums([1, 1, 2]) == 3", "True"),
        ("print_it([1])", ""),
    ]


def test_examples_stated_per_parameter_become_positional_asserts() -> None:
    task = '''def remove(s, c):
    """Delete from s every character in c.
    For s = "abcde", c = "ae", the result should be ('bcd',False)
    For c = "b", s = "abcdef"  the output should be 'acdef'.
    For N = 1000, the sum of digits will be 1 the output should be "1".
    For s = "x" the output should be 'x'
    """
'''
    assert [t.source for t in find_tests(task)] == [
        "assert remove('abcde', 'ae') == ('bcd',False)",
        "assert remove('abcdef', 'b') == 'acdef'",
    ]


def test_input_and_output_lines_become_asserts() -> None:
    task = '''def maximum(arr, k):
    """The k largest numbers, sorted.

    Example 1:
        Input: arr = [-3, -4, 5], k = 3
        Output: [-4, -3, 5]

    Example 2:
        Input: [4, -4, 4], 2
        Output: [4, 4] # the two fours
    Example 3:
        Input: arr = [1]
        Output: [1]
    """
'''
    assert [t.source for t in find_tests(task)] == [
        "assert maximum([-3, -4, 5], 3) == [-4, -3, 5]",
        "assert maximum([4, -4, 4], 2) == [4, 4]",
    ]
