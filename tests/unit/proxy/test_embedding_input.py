"""The embeddings `input` the guard admits: OpenAI's four shapes, each homogeneous, nothing else."""

from __future__ import annotations

import pytest

from gateway.proxy.admission import EMBEDDINGS, Refusal, check_body


@pytest.mark.parametrize("value", ["hi", ["a", "b"], [1, 2, 3], [[1, 2], [3]], [0]])
def test_the_four_shapes_pass(value):
    check_body(EMBEDDINGS, {"model": "m", "input": value})


@pytest.mark.parametrize(
    "value",
    [
        [[1], "x" * 30_000],  # held as 1 token before the fix
        ["x", 1],
        [1, [2]],
        [[1], ["x"]],
        [[]],
        [""],
        "",
        [],
        [True],
        [[1.5]],
        [-1],
        {"text": "x"},
        None,
    ],
)
def test_anything_else_is_refused_naming_input(value):
    with pytest.raises(Refusal) as refused:
        check_body(EMBEDDINGS, {"model": "m", "input": value})
    assert (refused.value.status, refused.value.param) == (400, "input")
