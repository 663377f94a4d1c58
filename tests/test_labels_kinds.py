"""What one label is: the checks of label sets, and a bad label carried to its index."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch

from torch_balance.labels import as_labelsets
from torch_balance.labels.kinds import LabelProblem


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ([[1.5], [2]], TypeError, "category ids"),
        ([[1], None], TypeError, "at index 1"),
        ([[1], ["a"]], TypeError, "sortable"),
        ([], ValueError, "at least one"),
        (np.array([0.0, 1.0]), TypeError, "integer or string"),
        (torch.tensor([[0, 2], [1, 0]]), ValueError, "multi-hot"),
        ("abc", TypeError, "sequence"),
    ],
)
def test_bad_label_sets(bad: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        as_labelsets(bad)


def test_single_labels_are_one_element_sets() -> None:
    assert as_labelsets(np.array([2, 0, 2])).tolist() == [(2,), (0,), (2,)]
    assert as_labelsets(["b", "a"]).tolist() == [("b",), ("a",)]


def test_label_problem_names_the_index_and_keeps_its_cause() -> None:
    cause = KeyError("row")
    problem = LabelProblem(ValueError, "a label", "KeyError: 'row'", "Fix it", cause=cause)
    with pytest.raises(
        ValueError, match=r"^label_fn: expected a label, got KeyError: 'row' at index 3\. Fix it$"
    ) as caught:
        problem.throw("label_fn", "at index 3")
    assert caught.value.__cause__ is cause
    # a DataLoader worker hands it back pickled, without the cause (which may not pickle)
    again = pickle.loads(pickle.dumps(problem))
    assert (again.kind, again.expected, again.got, again.fix, again.cause) == (
        ValueError,
        "a label",
        "KeyError: 'row'",
        "Fix it",
        None,
    )
