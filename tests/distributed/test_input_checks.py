"""The distributed losses check their hyperparameters and the local miner tuple like the loss.

One process (no process group): the checks run before anything is gathered, so a bad local
index can never be shifted into another rank's rows unnoticed.
"""

from __future__ import annotations

import math

import pytest
import torch

from pml_proxy_anchor.distributed import GlobalBatchLoss, ShardedProxyAnchorLoss
from pml_proxy_anchor.distributed.gather import gather_indices_tuple
from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.losses import ProxyAnchorLoss


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(6, 4, generator=gen), torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"margin": math.nan}, "margin"),
        ({"margin": math.inf}, "margin"),
        ({"alpha": "32"}, "alpha"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_bytes": -1}, "chunk_bytes"),
        ({"normalize": "yes"}, "normalize"),
        ({"validate": "false"}, "validate"),
    ],
)
def test_sharded_loss_refuses_bad_hyperparameters(kwargs: dict, argument: str) -> None:
    args = {"num_classes": 3, "embedding_size": 4, "rank": 0, "world_size": 1, **kwargs}
    with pytest.raises(UserError, match=argument):
        ShardedProxyAnchorLoss(**args)


BAD_TUPLES = [
    (torch.tensor([0]), torch.tensor([1])),  # arity 2
    (torch.tensor([0]), torch.tensor([1]), torch.tensor([6])),  # index == batch size
    (torch.tensor([0]), torch.tensor([1]), torch.tensor([-1])),  # would wrap
    (torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([2.0])),  # float indices
    (torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([2])),  # unequal lengths
]


@pytest.mark.parametrize("bad", BAD_TUPLES, ids=["arity", "range", "negative", "float", "length"])
def test_gather_checks_the_local_tuple_before_shifting(bad: tuple) -> None:
    with pytest.raises(UserError, match="indices_tuple"):
        gather_indices_tuple(bad, local_rows=6)


@pytest.mark.parametrize("bad", BAD_TUPLES[1:3], ids=["range", "negative"])
def test_both_distributed_losses_refuse_a_bad_tuple(bad: tuple) -> None:
    embeddings, labels = _batch()
    sharded = ShardedProxyAnchorLoss(3, 4, rank=0, world_size=1)
    wrapped = GlobalBatchLoss(ProxyAnchorLoss(3, 4))
    for loss in (sharded, wrapped):
        with pytest.raises(UserError, match="indices_tuple"):
            loss(embeddings, labels, bad)


def test_a_valid_tuple_gives_the_loss_of_the_plain_loss() -> None:
    embeddings, labels = _batch()
    plain = ProxyAnchorLoss(3, 4)
    wrapped = GlobalBatchLoss(plain)
    triplets = (torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([4, 5]))
    expected = plain(embeddings, labels, triplets)
    torch.testing.assert_close(wrapped(embeddings, labels, triplets), expected, rtol=0, atol=0)
