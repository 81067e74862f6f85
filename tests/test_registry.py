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


def test_parse_spec_is_the_one_parser():
    assert registry.parse_spec("MeanReducer") == ("MeanReducer", {})
    assert registry.parse_spec({"MeanReducer": None}) == ("MeanReducer", {})
    assert registry.parse_spec({"LpDistance": {"p": 1}}) == ("LpDistance", {"p": 1})
    assert registry.spec_name({"LpDistance": {"p": 1}}) == "LpDistance"
    assert registry.spec_name({"a": 1, "b": 2}) is None
    for bad, message in [
        (5, r"loss must be a spec"),
        ({}, r"loss must be a spec"),
        ("", r"loss is an empty name"),
        ({"ProxyAnchorLoss": [1]}, r"loss: the arguments of 'ProxyAnchorLoss' must be a mapping"),
        ({3: {}}, r"loss: the class name must be a string"),
    ]:
        with pytest.raises(registry.RegistryError, match=message):
            registry.parse_spec(bad, "loss")


def test_build_checks_the_kind_of_the_top_level_and_of_typed_arguments():
    with pytest.raises(registry.RegistryError, match=r"miner names 'MeanReducer', a reducer"):
        registry.build("MeanReducer", kind="miners", where="miner")
    with pytest.raises(registry.RegistryError, match=r"x\.ProxyAnchorLoss\.reducer names"):
        registry.build(
            {
                "ProxyAnchorLoss": {
                    "num_classes": 2,
                    "embedding_size": 2,
                    "reducer": "BatchHardMiner",
                }
            },
            where="x",
        )
    with pytest.raises(registry.RegistryError, match=r"spec\.TripletMarginMiner\.distance must"):
        registry.build({"TripletMarginMiner": {"distance": 0.5}})
    with pytest.raises(registry.RegistryError, match="unknown kind 'miner'"):
        registry.build("MeanReducer", kind="miner")
    # A bare name, a built object and null are all fine for a typed argument.
    miner = registry.build({"TripletMarginMiner": {"distance": "LpDistance"}}, kind="miners")
    assert isinstance(miner.distance, distances.LpDistance)
    built = distances.CosineSimilarity()
    assert registry.build({"TripletMarginMiner": {"distance": built}}).distance is built
    assert isinstance(registry.build({"TripletMarginMiner": {"distance": None}}), miners.BaseMiner)


def test_check_builds_nothing_and_returns_the_class():
    spec = {"ProxyAnchorLoss": {"num_classes": "ignored", "distance": {"LpDistance": {}}}}
    assert registry.check(spec, kind="losses", where="loss") is ProxyAnchorLoss
    with pytest.raises(registry.RegistryError, match=r"loss\.ProxyAnchorLoss\.distance: unknown"):
        registry.check({"ProxyAnchorLoss": {"distance": "LpDistanse"}}, where="loss")


def test_defaults_fill_only_arguments_the_class_names():
    loss = registry.build(
        {"ProxyAnchorLoss": {"embedding_size": 4}},
        defaults={"num_classes": 3, "embedding_size": 99, "labels": None},
    )
    assert (loss.num_classes, loss.embedding_size) == (3, 4)  # the spec's value wins
    assert not registry.accepts(ProxyAnchorLoss, "reducer")  # taken through **kwargs only
    assert registry.accepts(ProxyAnchorLoss, "num_classes")
    assert registry.kind_of("pml.MeanReducer") == "reducers" and registry.kind_of("nope") is None


def test_constructor_errors_name_the_place():
    with pytest.raises(registry.RegistryError, match=r"could not build 'MPerClassSampler' \(s\)"):
        registry.build({"MPerClassSampler": {"m": 3, "batch_size": 10}}, where="s", labels=[0, 1])
