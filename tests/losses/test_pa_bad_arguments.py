"""Bad hyperparameters and bad miner tuples of the Proxy-Anchor loss: each is refused with one
clear message naming the argument, while every valid PML miner output works as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_metric_learning import miners

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.losses import ProxyAnchorLoss
from pml_proxy_anchor.losses.validation import validate_hyperparameters

NAN, INF = float("nan"), float("inf")


def batch(b: int = 12, c: int = 4, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.arange(b) % c


# ---- hyperparameters ----
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"alpha": INF}, ValueError, r"alpha must be a finite number.*got inf"),
        ({"alpha": -INF}, ValueError, r"alpha must be a finite number.*got -inf"),
        ({"alpha": NAN}, ValueError, r"alpha must be a finite number.*got nan"),
        ({"alpha": 0}, ValueError, r"alpha must be > 0 \(the paper uses 32\); got 0"),
        ({"alpha": -1.0}, ValueError, r"alpha must be > 0.*got -1.0"),
        ({"alpha": "32"}, TypeError, r"alpha must be a finite number.*got '32' of type str"),
        ({"alpha": True}, TypeError, r"alpha must be a finite number.*got True of type bool"),
        ({"alpha": None}, TypeError, r"alpha must be a finite number.*got None"),
        ({"margin": NAN}, ValueError, r"margin must be a finite number.*got nan"),
        ({"margin": INF}, ValueError, r"margin must be a finite number.*got inf"),
        ({"margin": "0.1"}, TypeError, r"margin must be a finite number.*got '0.1' of type str"),
        ({"margin": None}, TypeError, r"margin must be a finite number.*got None"),
        ({"num_classes": 2.5}, TypeError, r"num_classes must be a positive integer; got 2.5"),
        ({"num_classes": 4.0}, TypeError, r"num_classes must be a positive integer; got 4.0"),
        ({"num_classes": True}, TypeError, r"num_classes must be a positive integer; got True"),
        ({"num_classes": "10"}, TypeError, r"num_classes must be a positive integer; got '10'"),
        ({"num_classes": np.float64(4)}, TypeError, r"num_classes must be a positive integer"),
        ({"num_classes": 0}, ValueError, r"num_classes must be a positive integer; got 0"),
        ({"num_classes": -3}, ValueError, r"num_classes must be a positive integer; got -3"),
        ({"embedding_size": 5.5}, TypeError, r"embedding_size must be a positive integer"),
        ({"embedding_size": False}, TypeError, r"embedding_size must be .*got False"),
        ({"embedding_size": "5"}, TypeError, r"embedding_size must be .*got '5'"),
        ({"embedding_size": 0}, ValueError, r"embedding_size must be .*got 0"),
        ({"chunk_size": 0}, ValueError, r"chunk_size must be a positive integer or None.*got 0"),
        ({"chunk_size": -8}, ValueError, r"chunk_size must be .*got -8"),
        ({"chunk_size": 2.0}, TypeError, r"chunk_size must be .*got 2.0 of type float"),
        ({"chunk_size": True}, TypeError, r"chunk_size must be .*got True of type bool"),
        ({"chunk_size": "64"}, TypeError, r"chunk_size must be .*got '64'"),
        ({"chunk_bytes": 0}, ValueError, r"chunk_bytes must be a positive integer; got 0"),
        ({"chunk_bytes": -1}, ValueError, r"chunk_bytes must be .*got -1"),
        ({"chunk_bytes": 1.5e6}, TypeError, r"chunk_bytes must be .*got 1500000.0"),
        ({"chunk_bytes": None}, TypeError, r"chunk_bytes must be .*got None"),
        ({"chunk_bytes": True}, TypeError, r"chunk_bytes must be .*got True"),
        ({"fused": "false"}, TypeError, r"fused must be True, False or None; got 'false'"),
        ({"validate": None}, TypeError, r"validate must be True or False; got None"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else "",
)
def test_bad_hyperparameters_are_refused_naming_the_argument(kwargs, error, message):
    args = {"num_classes": 4, "embedding_size": 5, **kwargs}
    with pytest.raises(error, match=message) as info:
        ProxyAnchorLoss(**args)
    assert isinstance(info.value, UserError)


def test_the_shared_check_keeps_its_positional_api():
    # distributed/sharded.py calls validate_hyperparameters(num_classes, embedding_size, alpha)
    validate_hyperparameters(4, 5, 32.0)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        validate_hyperparameters(4, 5, INF)
    with pytest.raises(ValueError, match="margin must be a finite number"):
        validate_hyperparameters(4, 5, 32.0, margin=NAN)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": np.int64(4), "embedding_size": np.int32(5)},
        {"alpha": np.float32(16.0), "margin": np.float64(0.2)},
        {"alpha": 1, "margin": 0},  # integers for the floats
        {"margin": -0.1},  # a legitimate ablation
        {"chunk_size": np.int64(2), "chunk_bytes": 4096},
        {"fused": False, "validate": False},
    ],
)
def test_valid_hyperparameters_are_accepted_and_stored_as_python_numbers(kwargs):
    loss_fn = ProxyAnchorLoss(**{"num_classes": 4, "embedding_size": 5, **kwargs})
    assert type(loss_fn.num_classes) is int and type(loss_fn.embedding_size) is int
    assert type(loss_fn.alpha) is float and type(loss_fn.margin) is float
    assert loss_fn.chunk_size is None or type(loss_fn.chunk_size) is int
    x, labels = batch()
    assert torch.isfinite(loss_fn(x, labels))


# ---- miner tuples ----
def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


@pytest.mark.parametrize(
    "indices_tuple, error, message",
    [
        ((t(0, 1), t(2, 3)), ValueError, r"indices_tuple has 2 tensors, not 3 or 4"),
        ((t(0),) * 5, ValueError, r"indices_tuple has 5 tensors, not 3 or 4"),
        ((), ValueError, r"indices_tuple has 0 tensors"),
        ((t(0, 1), t(4), t(8, 9)), ValueError, r"unequal lengths \(anchors=2, positives=1, "),
        ((t(0, 1), t(4, 5), t(8)), ValueError, r"unequal lengths .*negatives=1\)"),
        ((t(0, 1), t(4), t(2), t(3)), ValueError, r"unequal lengths \(anchors1=2, positives=1"),
        ((t(0), t(4), t(1, 2), t(3)), ValueError, r"unequal lengths \(anchors2=2, negatives=1"),
        ((t(0, 12), t(4, 8), t(1, 2)), ValueError, r"outside \[0, 12\).*: anchors \[12\]"),
        ((t(0), t(4), t(-1)), ValueError, r"outside \[0, 12\).*: negatives \[-1\]"),
        ((t(0), t(4), t(1), t(99)), ValueError, r"outside \[0, 12\).*: negatives \[99\]"),
        (
            (torch.tensor([0.0]), t(4), t(1)),
            TypeError,
            r"item 0 \(anchors\) has dtype torch.float32",
        ),
        ((t(0), t(4), torch.tensor([True])), TypeError, r"item 2 \(negatives\) has dtype"),
        (([0, 1], [4, 5], [8, 9]), TypeError, r"item 0 \(anchors\) is a list, not a tensor"),
        ((t(0), t(4), 1), TypeError, r"item 2 \(negatives\) is a int, not a tensor"),
        ((t(0), t(4)[None], t(1)), ValueError, r"item 1 \(positives\) has shape \(1, 1\)"),
        ((torch.tensor(0), t(4), t(1)), ValueError, r"item 0 \(anchors\) has shape \(\)"),
        (torch.zeros(3, 2, dtype=torch.long), TypeError, r"indices_tuple is a Tensor"),
        ("abc", TypeError, r"indices_tuple is a str"),
    ],
    ids=[
        "2-tuple",
        "5-tuple",
        "empty-tuple",
        "triplet-lengths-ap",
        "triplet-lengths-n",
        "pairs-lengths-pos",
        "pairs-lengths-neg",
        "index-too-large",
        "index-minus-one",
        "pairs-index-too-large",
        "float-indices",
        "bool-indices",
        "list-indices",
        "int-item",
        "2-d-item",
        "0-d-item",
        "stacked-tensor",
        "string",
    ],
)
@pytest.mark.parametrize("fused", [None, False])
def test_bad_miner_tuples_are_refused_with_one_message(indices_tuple, error, message, fused):
    x, labels = batch()
    loss_fn = ProxyAnchorLoss(4, 5, fused=fused)
    with pytest.raises(error, match=message) as info:
        loss_fn(x, labels, indices_tuple)
    assert isinstance(info.value, UserError)
    text = str(info.value)
    assert text.startswith("indices_tuple ")  # names the argument
    assert "(anchors, positives, negatives) or (anchors1, positives, anchors2, negatives)" in text


@pytest.mark.parametrize(
    "miner",
    [
        miners.MultiSimilarityMiner(epsilon=0.1),
        miners.TripletMarginMiner(margin=0.2, type_of_triplets="all"),
        miners.PairMarginMiner(pos_margin=0.9, neg_margin=0.1),
        miners.BatchHardMiner(),
        miners.MultiSimilarityMiner(epsilon=-10.0),  # finds nothing: tensors of length 0
    ],
    ids=["multi-similarity", "triplet-margin", "pair-margin", "batch-hard", "empty"],
)
@pytest.mark.parametrize("fused", [None, False])
def test_pml_miner_outputs_give_the_same_loss_as_without_the_check(miner, fused):
    x, labels = batch(b=16, c=4, d=5, seed=3)
    tup = miner(x, labels)
    checked = ProxyAnchorLoss(4, 5, fused=fused)
    unchecked = ProxyAnchorLoss(4, 5, fused=fused, validate=False)
    unchecked.proxies.data.copy_(checked.proxies.data)
    got, want = checked(x, labels, tup), unchecked(x, labels, tup)
    assert torch.isfinite(got)
    assert torch.equal(got, want)


def test_other_integer_dtypes_and_list_containers_are_accepted():
    x, labels = batch()
    loss_fn = ProxyAnchorLoss(4, 5)
    long_tuple = (t(0, 1, 2), t(4, 5, 6), t(1, 3, 7))
    want = loss_fn(x, labels, long_tuple)
    int32 = tuple(v.int() for v in long_tuple)
    torch.testing.assert_close(loss_fn(x, labels, int32), want, rtol=0, atol=0)
    torch.testing.assert_close(loss_fn(x, labels, list(long_tuple)), want, rtol=0, atol=0)
    # uint8 indices are indices here, not a boolean mask
    uint8 = tuple(v.to(torch.uint8) for v in long_tuple)
    torch.testing.assert_close(loss_fn(x, labels, uint8), want, rtol=0, atol=0)
