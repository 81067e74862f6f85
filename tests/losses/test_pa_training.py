"""The loss trains inside PML's MetricLossOnly trainer with the proxies in metric_loss_optimizer."""

from __future__ import annotations

import torch
from pytorch_metric_learning import miners, trainers

from pml_proxy_anchor.losses import ProxyAnchorLoss


def test_trains_in_metric_loss_only(tmp_path):
    torch.manual_seed(0)  # the layers' initialisation and the trainer's shuffling
    num_classes, dim = 4, 8
    labels = torch.arange(64) % num_classes
    data = (
        torch.randn(64, 10, generator=torch.Generator().manual_seed(1))
        + 2.0 * torch.nn.functional.one_hot(labels, 10).float()
    )
    dataset = torch.utils.data.TensorDataset(data, labels)
    trunk = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU())
    embedder = torch.nn.Linear(16, dim)
    loss_fn = ProxyAnchorLoss(num_classes, dim)
    start = loss_fn.proxies.detach().clone()
    losses: list[float] = []

    def record(trainer):
        losses.append(float(trainer.losses["total_loss"].detach()))

    trainer = trainers.MetricLossOnly(
        models={"trunk": trunk, "embedder": embedder},
        optimizers={
            "trunk_optimizer": torch.optim.AdamW(trunk.parameters(), lr=1e-3),
            "embedder_optimizer": torch.optim.AdamW(embedder.parameters(), lr=1e-3),
            "metric_loss_optimizer": torch.optim.AdamW(loss_fn.parameters(), lr=1e-1),
        },
        batch_size=16,
        loss_funcs={"metric_loss": loss_fn},
        mining_funcs={"tuple_miner": miners.MultiSimilarityMiner()},
        dataset=dataset,
        dataloader_num_workers=0,
        end_of_iteration_hook=record,
    )
    trainer.train(num_epochs=1)
    assert len(losses) == 4
    assert all(torch.isfinite(torch.tensor(losses)))
    assert float((loss_fn.proxies.detach() - start).abs().max()) > 1e-2  # the proxies moved
