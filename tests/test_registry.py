"""The name registry over this package and pytorch-metric-learning, and the entry point."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch
from pytorch_metric_learning import distances, losses, miners, reducers, regularizers, samplers

from pml_proxy_anchor import registry
from pml_proxy_anchor.losses import ProxyAnchorLoss


def test_ours_and_pml_names():
    assert registry.get("ProxyAnchorLoss") is ProxyAnchorLoss
    assert registry.get("pml.ProxyAnchorLoss") is losses.ProxyAnchorLoss
    assert registry.get("MultiSimilarityMiner") is miners.MultiSimilarityMiner
    assert registry.get("pml.MeanReducer") is reducers.MeanReducer
    assert registry.get("LpDistance") is distances.LpDistance
    assert registry.get("RegularFaceRegularizer") is regularizers.RegularFaceRegularizer
    assert registry.get("MPerClassSampler") is samplers.MPerClassSampler
    assert "ContrastiveLoss" in registry.names("losses")
    assert "TripletMarginMiner" in registry.names("miners")
    assert "ContrastiveLoss" not in registry.names("miners")


def test_build_nested_spec():
    loss = registry.build(
        {
            "ProxyAnchorLoss": {
                "num_classes": 10,
                "embedding_size": 64,
                "alpha": 16,
                "distance": {"LpDistance": {"p": 2}},
                "reducer": {"SumReducer": {}},
                "weight_regularizer": {"pml.LpRegularizer": None},
            }
        }
    )
    assert isinstance(loss, ProxyAnchorLoss) and loss.alpha == 16.0
    assert isinstance(loss.distance, distances.LpDistance)
    assert isinstance(loss.reducer.reducers["pos_loss"], reducers.SumReducer)
    assert isinstance(loss.weight_regularizer, regularizers.LpRegularizer)
    assert loss.proxies.shape == (10, 64)


def test_build_plain_dicts_and_names():
    red = registry.build({"MultipleReducers": {"reducers": {"pos_loss": {"SumReducer": {}}}}})
    assert isinstance(red.reducers["pos_loss"], reducers.SumReducer)
    assert isinstance(registry.build("MeanReducer"), reducers.MeanReducer)
    labels = torch.arange(20) % 5
    sampler = registry.build({"MPerClassSampler": {"m": 2}}, labels=labels)
    assert isinstance(sampler, samplers.MPerClassSampler)


def test_typo_lists_closest_names():
    with pytest.raises(registry.RegistryError, match="did you mean 'ProxyAnchorLoss'"):
        registry.get("ProxyAnchorLos")
    with pytest.raises(KeyError, match="did you mean 'CosineSimilarity'"):
        registry.build(
            {
                "ProxyAnchorLoss": {
                    "num_classes": 3,
                    "embedding_size": 2,
                    "distance": {"CosineSimilarty": {}},
                }
            }
        )
    with pytest.raises(ValueError, match="exactly one key"):
        registry.build({"MeanReducer": {}, "SumReducer": {}})
    with pytest.raises(registry.RegistryError, match="could not build 'ProxyAnchorLoss'"):
        registry.build({"ProxyAnchorLoss": {"num_classes": 3}})


def test_register_refuses_silent_overwrite():
    class MyLoss(torch.nn.Module):
        pass

    assert registry.register("MyTestOnlyLoss", MyLoss) is MyLoss
    assert registry.get("MyTestOnlyLoss") is MyLoss
    with pytest.raises(registry.RegistryError, match="already registered"):
        registry.register("ProxyAnchorLoss", MyLoss)


def test_entry_point_finds_and_loads_the_loss():
    eps = metadata.entry_points(group="pytorch_metric_learning.losses")
    found = [ep for ep in eps if ep.name == "ProxyAnchorLoss"]
    assert len(found) == 1
    assert found[0].load() is ProxyAnchorLoss
