"""The keyed permutation of draws/permute.py: a bijection of [0, n), equal to its plain
reference, a function of its key alone."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_balance.draws import permute, permute_reference

KEYS = st.integers(min_value=0, max_value=2**64 - 1)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(min_value=1, max_value=3000), key=KEYS)
def test_a_bijection_equal_to_the_reference(n: int, key: int) -> None:
    out = permute(np.arange(n), n, key)
    assert out.dtype == np.int64 and sorted(out.tolist()) == list(range(n))
    some = range(0, n, max(1, n // 50))
    assert [int(out[i]) for i in some] == [permute_reference(i, n, key) for i in some]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=20),
    keys=st.lists(KEYS, min_size=20, max_size=20),
    data=st.data(),
)
def test_each_position_its_own_domain_and_key(sizes: list[int], keys: list[int], data) -> None:  # type: ignore[no-untyped-def]
    """One call over positions of many classes equals each class's permutation on its own."""
    i = [data.draw(st.integers(min_value=0, max_value=n - 1)) for n in sizes]
    keys = keys[: len(sizes)]
    got = permute(np.array(i), np.array(sizes), np.array(keys, dtype=np.uint64))
    expected = [permute_reference(a, n, k) for a, n, k in zip(i, sizes, keys, strict=True)]
    assert got.tolist() == expected
    assert all(0 <= g < n for g, n in zip(got.tolist(), sizes, strict=True))


def test_keys_give_different_permutations_and_small_domains() -> None:
    a, b = permute(np.arange(1000), 1000, 1), permute(np.arange(1000), 1000, 2)
    assert (a != b).mean() > 0.9
    assert permute(np.zeros(3, dtype=np.int64), 1, 5).tolist() == [0, 0, 0]
    assert permute(np.zeros((0,), dtype=np.int64), 4, 5).shape == (0,)
    # the first r of a class's images mark r samples: exactly r, wherever they are asked
    marked = permute(np.arange(997), 997, 9) < 300
    assert int(marked.sum()) == 300
