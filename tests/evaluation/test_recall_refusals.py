"""No silent wrong Recall@K: every bad input is refused with a clear error, edge cases are exact.

Each case here once gave a wrong number or a raw numpy/torch error: ``block_size=-1`` gave
Recall@K = 1.0 for every K, all-distinct labels crashed in ``torch.cat``, an all-zero row (cosine
undefined) and huge values (float32 overflow in the normalisation) passed silently, string labels
gave numpy's TypeError.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recall_reference import brute_force_hits

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.evaluation import (
    RecallAtKCalculator,
    RecallAtKWarning,
    RecallInputError,
    best_positive_ranks,
    compute_recall_at_k,
)
from pml_proxy_anchor.training.errors import DeviceNotAvailableError

CPU = torch.device("cpu")
KS = (1, 2, 4, 8)


def _data(
    n: int = 40, d: int = 6, classes: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    x = (np.eye(d)[labels % d] + 0.9 * rng.standard_normal((n, d))).astype(np.float32)
    return x, labels


def _expected(x: np.ndarray, y: np.ndarray, ks: tuple[int, ...] = KS, **kw) -> dict[str, float]:
    xn = x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    hits = brute_force_hits(xn.astype(np.float32), y, None, None, ks, **kw)
    return {f"recall_at_{k}": float(hits[k].mean()) for k in ks}


def test_recall_input_error_is_a_user_error() -> None:
    assert issubclass(RecallInputError, UserError) and issubclass(RecallInputError, ValueError)


@pytest.mark.parametrize("bad", [-1, 0, -2048, 1.5, 2048.0, True, False, "64"])
def test_block_size_that_is_not_a_positive_int_is_refused(bad: object) -> None:
    x, y = _data()
    match = rf"block_size must be a positive integer .* got {bad!r}"
    with pytest.raises(RecallInputError, match=match):
        compute_recall_at_k(x, y, block_size=bad)
    with pytest.raises(RecallInputError, match=match):
        RecallAtKCalculator(block_size=bad, device=CPU)
    with pytest.raises(RecallInputError, match=match):
        best_positive_ranks(torch.from_numpy(x), torch.from_numpy(y), block_size=bad)


@pytest.mark.parametrize("block_size", [1, 3, np.int64(7), None])
def test_any_positive_block_size_gives_the_reference_values(block_size: object) -> None:
    x, y = _data()
    expected = _expected(x, y)
    assert expected["recall_at_1"] < 1.0  # the once-returned 1.0 would fail here
    got = compute_recall_at_k(x, y, block_size=block_size)
    assert got == pytest.approx(expected, abs=1e-12)


def test_all_distinct_labels_self_retrieval_give_zero_with_the_warning() -> None:
    x, _ = _data(n=30)
    distinct = np.arange(30)
    with pytest.warns(RecallAtKWarning, match=r"30 of 30 queries have no item of their class"):
        out = compute_recall_at_k(x, distinct, k_values=(1, 5))
    assert out == {"recall_at_1": 0.0, "recall_at_5": 0.0}
    calc = RecallAtKCalculator(k_values=(1, 5), device=CPU)
    xt, yt = torch.from_numpy(x), torch.from_numpy(distinct)
    with pytest.warns(RecallAtKWarning, match=r"30 of 30"):
        assert calc.get_accuracy(xt, yt) == {"recall_at_1": 0.0, "recall_at_5": 0.0}
    with pytest.warns(RecallAtKWarning, match=r"30 of 30"):  # PML's tester convention
        assert calc.get_accuracy(xt, yt, xt, yt, ref_includes_query=True)["recall_at_1"] == 0.0
    # query/gallery with no shared class: also 0, also warned
    with pytest.warns(RecallAtKWarning, match=r"5 of 5 queries"):
        out = compute_recall_at_k(x[:5], np.arange(5), x[5:], np.arange(100, 125), (1,))
    assert out == {"recall_at_1": 0.0}


def test_mostly_singleton_classes_match_the_reference() -> None:
    x, _ = _data(n=30)
    labels = np.arange(30)
    labels[[3, 17]] = 3  # one pair shares a class, every other item is alone
    labels[[5, 9, 22]] = 5
    with pytest.warns(RecallAtKWarning, match=r"25 of 30 queries"):
        got = compute_recall_at_k(x, labels, k_values=KS)
    assert got == pytest.approx(_expected(x, labels), abs=1e-12)


def test_all_zero_rows_are_refused_by_index_under_cosine() -> None:
    x, y = _data()
    x[[4, 11]] = 0.0
    with pytest.raises(
        RecallInputError,
        match=r"query embeddings has 2 all-zero row\(s\) \(rows \[4, 11\]\).*cosine similarity "
        r"is undefined.*fix: drop those rows .* or re-embed",
    ):
        compute_recall_at_k(x, y)
    good, _ = _data()
    with pytest.raises(RecallInputError, match=r"gallery embeddings has 2 all-zero row"):
        compute_recall_at_k(good[:8], y[:8], x, y)
    with pytest.raises(RecallInputError, match=r"rows \[4, 11\]"):
        RecallAtKCalculator(device=CPU).get_accuracy(torch.from_numpy(x), torch.from_numpy(y))
    with pytest.raises(RecallInputError, match=r"all-zero"):
        compute_recall_at_k(x, y, exact=False)


def test_all_zero_rows_are_fine_for_the_inner_product() -> None:
    x, y = _data()
    x[[4, 11]] = 0.0
    got = compute_recall_at_k(x, y, normalize=False)
    hits = brute_force_hits(x, y, None, None, KS)
    assert got == pytest.approx({f"recall_at_{k}": hits[k].mean() for k in KS}, abs=1e-12)


@pytest.mark.parametrize("scale", [1e30, 1e-11, 1e-30])
def test_huge_and_tiny_embeddings_rank_like_unit_ones(scale: float) -> None:
    x, y = _data()
    scaled = (x.astype(np.float64) * scale).astype(np.float32)
    assert np.all(np.any(scaled != 0, axis=1))
    assert compute_recall_at_k(scaled, y) == pytest.approx(_expected(x, y), abs=1e-12)


def test_inner_products_beyond_float32_are_refused_without_normalisation() -> None:
    x, y = _data()
    with pytest.raises(RecallInputError, match=r"normalize=False .* beyond what float32 holds"):
        compute_recall_at_k(x * 1e20, y, normalize=False)


def test_float64_values_beyond_float32_are_named() -> None:
    x, y = _data()
    big = x.astype(np.float64)
    big[2, 0] = 1e300
    with pytest.raises(RecallInputError, match=r"beyond the float32 range .*first rows: \[2\]"):
        compute_recall_at_k(big, y)


@pytest.mark.parametrize(
    ("labels", "dtype"),
    [
        (np.array([f"class{i % 8}" for i in range(40)]), "<U6"),
        ([f"c{i % 8}" for i in range(40)], "<U2"),
        (np.array([b"a"] * 40), "|S1"),
        (np.array([None] * 40, dtype=object), "object"),
    ],
)
def test_non_integer_label_dtypes_are_named(labels: object, dtype: str) -> None:
    x, _ = _data()
    match = rf"query labels have dtype {dtype} .*expected integer class ids.*np\.unique"
    with pytest.raises(RecallInputError, match=match):
        compute_recall_at_k(x, labels)
    with pytest.raises(RecallInputError, match=r"gallery labels have dtype"):
        compute_recall_at_k(x, np.arange(40) % 8, x, labels)


@pytest.mark.parametrize(
    ("embeddings", "match"),
    [
        (np.array([["a", "b"]] * 40), r"dtype <U1 \(strings\)"),
        (np.ones((40, 3), dtype=np.complex64), r"dtype complex64"),
        (torch.ones(40, 3, dtype=torch.complex64), r"dtype torch.complex64"),
        (np.zeros((40, 0), np.float32), r"embedding dimension 0"),
        ([[1.0, 2.0], [3.0]] * 20, r"cannot be read as an array"),
        (np.ones(40, np.float32), r"2-D array .* got shape \(40,\)"),
        (np.ones((40, 2, 2), np.float32), r"2-D array .* got shape \(40, 2, 2\)"),
    ],
)
def test_embeddings_of_the_wrong_kind_are_refused(embeddings: object, match: str) -> None:
    with pytest.raises(RecallInputError, match=match):
        compute_recall_at_k(embeddings, np.arange(40) % 8, k_values=(1,))


def test_integer_and_bool_embeddings_are_read_as_numbers() -> None:
    x, y = _data()
    ints = np.rint(x * 10).astype(np.int64)
    ints[np.all(ints == 0, axis=1), 0] = 1
    expected = _expected(ints.astype(np.float32), y)
    assert compute_recall_at_k(ints, y) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("k_values", "match"),
    [
        ((True,), r"not a positive integer: True"),
        ((1, 2.5), r"not a positive integer: 2\.5"),
        ((1.0,), r"not a positive integer: 1\.0"),
        (("1",), r"not a positive integer: '1'"),
        ((0, 1), r"not a positive integer: 0"),
        ((-4,), r"not a positive integer: -4"),
        ((), r"k_values is empty"),
        (1, r"must be a sequence of positive integers, got 1"),
        ("12", r"must be a sequence of positive integers, got '12'"),
    ],
)
def test_bad_k_values_are_refused(k_values: object, match: str) -> None:
    x, y = _data()
    with pytest.raises(RecallInputError, match=match):
        compute_recall_at_k(x, y, k_values=k_values)
    with pytest.raises(RecallInputError, match=match):
        RecallAtKCalculator(k_values=k_values, device=CPU)


def test_numpy_integer_k_values_are_accepted() -> None:
    x, y = _data()
    got = compute_recall_at_k(x, y, k_values=np.array([8, 1, 2, 4]))
    assert got == pytest.approx(_expected(x, y), abs=1e-12)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    x, y = _data()
    with pytest.raises(DeviceNotAvailableError, match=r"device='cuda' asks for CUDA.*device=cpu"):
        compute_recall_at_k(x, y, device="cuda")


def test_a_device_name_that_does_not_exist_is_named() -> None:
    x, y = _data()
    with pytest.raises(DeviceNotAvailableError, match=r"device='gpu' is not a device name"):
        compute_recall_at_k(x, y, device="gpu")
    with pytest.raises(RecallInputError, match=r"device must be a device name .* got 3"):
        compute_recall_at_k(x, y, device=3)


def test_calculator_metric_names_are_checked() -> None:
    with pytest.raises(RecallInputError, match=r"'recall_at_3', but its K is not in k_values"):
        RecallAtKCalculator(k_values=(1, 2), include=("recall_at_3",), device=CPU)
    with pytest.raises(
        UserError, match=r"unknown metric in exclude 'precison_at_1'.*precision_at_1"
    ):
        RecallAtKCalculator(exclude=("precison_at_1",), device=CPU)
    with pytest.raises(RecallInputError, match=r"include must be a list of metric names"):
        RecallAtKCalculator(include="recall_at_1", device=CPU)


def test_calculator_device_is_checked_and_a_name_is_accepted() -> None:
    x, y = _data()
    calc = RecallAtKCalculator(device="cpu")
    assert calc.device == CPU
    got = calc.get_accuracy(torch.from_numpy(x), torch.from_numpy(y))
    assert got == pytest.approx(_expected(x, y), abs=1e-12)
    with pytest.raises(DeviceNotAvailableError, match=r"device='tpu' is not a device name"):
        RecallAtKCalculator(device="tpu")


@pytest.mark.parametrize(
    ("index", "match"),
    [
        ("Bogus", r"approximate_index='Bogus' is not a faiss index factory string"),
        (5, r"approximate_index must be a faiss index factory string .* got 5"),
        ("IVF4096,Flat", r"cannot be built on 40 gallery items .*exact=True"),
    ],
)
def test_bad_approximate_index_is_refused(index: object, match: str) -> None:
    x, y = _data()
    calc = RecallAtKCalculator(exact=False, approximate_index=index, device=CPU)
    with pytest.raises(RecallInputError, match=match):
        calc.get_accuracy(torch.from_numpy(x), torch.from_numpy(y))


@pytest.mark.cuda
@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-30])
def test_cuda_gives_the_cpu_values(scale: float) -> None:
    x, y = _data(n=120, classes=12)
    scaled = (x.astype(np.float64) * scale).astype(np.float32)
    cpu = compute_recall_at_k(scaled, y, device="cpu", block_size=7)
    assert compute_recall_at_k(scaled, y, device="cuda", block_size=7) == cpu
    assert cpu == pytest.approx(_expected(x, y), abs=1e-12)
    calc = RecallAtKCalculator(device="cuda")
    assert calc.get_accuracy(torch.from_numpy(scaled).cuda(), torch.from_numpy(y).cuda()) == cpu
