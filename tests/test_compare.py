"""The comparator's verdicts and the words it uses for each kind of wrong answer."""

from __future__ import annotations

import math

import torch

from autograder.core.compare import compare, compare_outputs
from autograder.core.spec import Tolerance

TOL = Tolerance(atol=1e-5, rtol=1e-4)


def test_equal_tensors_pass_and_small_noise_within_tolerance_passes() -> None:
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    assert compare(x, x.clone(), TOL) is None
    assert compare(x, x + 1e-6, TOL) is None


def test_shape_mismatch_names_both_shapes() -> None:
    msg = compare(torch.zeros(2, 3), torch.zeros(3, 2), TOL, "weights")
    assert msg == "`weights` has shape (3, 2), expected (2, 3)"


def test_dtype_mismatch_names_both_dtypes() -> None:
    msg = compare(torch.zeros(2, dtype=torch.bool), torch.zeros(2), TOL, "mask")
    assert msg == "`mask` has dtype float32, expected bool"


def test_value_mismatch_gives_count_worst_index_and_values() -> None:
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = 0.5
    actual[0, 0] = 0.1
    msg = compare(expected, actual, TOL, "out")
    assert msg.startswith("`out` differs at 2 of 6 positions; the largest difference is 0.5 at")
    assert "index (1, 2): expected 0, got 0.5" in msg


def test_nan_where_a_number_was_expected_is_named() -> None:
    actual = torch.tensor([1.0, math.nan])
    assert "has NaN at 1 of 2 positions (first at (1,))" in compare(torch.ones(2), actual, TOL)


def test_matching_infinities_and_nans_are_equal() -> None:
    x = torch.tensor([math.inf, -math.inf, math.nan, 1.0])
    assert compare(x, x.clone(), TOL) is None


def test_wrong_return_type_for_a_tuple_of_outputs() -> None:
    msg = compare_outputs((torch.zeros(1), torch.zeros(1)), torch.zeros(1), TOL, ("out", "w"))
    assert msg == "should return a tuple (out, w), got a tensor of shape (1,) and dtype float32"


def test_non_tensor_answer_where_a_tensor_is_expected() -> None:
    assert compare(torch.zeros(1), [0.0], TOL, "out") == "`out` should be a tensor, got a list of 1"
    unsupported = {"__unsupported__": "Generator"}
    assert compare(torch.zeros(1), unsupported, TOL) == (
        "`output` should be a tensor of shape (1,) and dtype float32, got a Generator"
    )


def test_numbers_ints_and_strings() -> None:
    assert compare(3, 3, TOL) is None
    assert compare(3, 3.0, TOL) == "`output` should be an int, got a float (3.0)"
    assert compare(0.5, 0.50001, TOL) is None
    assert compare(0.5, 0.6, TOL) == "`output` is 0.6, expected 0.5"
    assert compare("a", "b", TOL) == "`output` should be 'a', got 'b'"
