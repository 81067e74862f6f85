"""Every route from a config to a PML object, through load_config and the training builders.

Each test loads a config (a mapping or a YAML file with command-line overrides), builds its
pieces with :mod:`pml_proxy_anchor.training.builders`, and checks the built objects' types and
arguments; the regularizer tests check that the regularizer changes the loss by exactly its own
value times its weight. Specs of the wrong kind are refused naming the config key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pytorch_metric_learning import distances, miners, reducers, regularizers, samplers

from pml_proxy_anchor.losses import ProxyAnchorLoss
from pml_proxy_anchor.registry import RegistryError
from pml_proxy_anchor.training import builders, load_config
from pml_proxy_anchor.training.builders import EvalSplits
from pml_proxy_anchor.training.errors import ConfigValueError

CPU = torch.device("cpu")
NUM_CLASSES, EMBEDDING_SIZE = 5, 8


def config(**sections: Any) -> dict[str, Any]:
    return {"data": {"name": "omniglot"}, "model": {"backbone": "small_cnn"}, **sections}


def build_loss(cfg: Any) -> ProxyAnchorLoss:
    return builders.build_loss(cfg, NUM_CLASSES, EMBEDDING_SIZE, CPU)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    embeddings = 3 * torch.randn(12, EMBEDDING_SIZE, generator=generator)
    return embeddings, torch.arange(12) % NUM_CLASSES


def same_proxies(*losses: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(11)
    proxies = torch.randn(NUM_CLASSES, EMBEDDING_SIZE, generator=generator)
    for loss in losses:
        with torch.no_grad():
            loss.proxies.copy_(proxies)


def test_distance_route() -> None:
    cfg = load_config(
        config(loss={"ProxyAnchorLoss": {"distance": {"DotProductSimilarity": {}}, "alpha": 8}})
    )
    loss = build_loss(cfg)
    assert isinstance(loss, ProxyAnchorLoss) and loss.alpha == 8.0
    assert type(loss.distance) is distances.DotProductSimilarity
    assert loss.proxies.shape == (NUM_CLASSES, EMBEDDING_SIZE)


def test_bare_class_name_is_a_spec_without_arguments(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(
        "data: {name: omniglot}\nmodel: {backbone: small_cnn}\n"
        "loss: {ProxyAnchorLoss: {distance: CosineSimilarity}}\n"
    )
    loss = build_loss(load_config(tmp_path / "run.yaml"))
    assert type(loss.distance) is distances.CosineSimilarity


def test_reducer_route() -> None:
    cfg = load_config(
        config(),
        ["+loss.ProxyAnchorLoss.reducer={SumReducer: {}}", "loss.ProxyAnchorLoss.margin=0.2"],
    )
    loss = build_loss(cfg)
    assert loss.margin == pytest.approx(0.2)
    assert type(loss.reducer.reducers["pos_loss"]) is reducers.SumReducer
    assert type(loss.reducer.reducers["neg_loss"]) is reducers.SumReducer


def test_miner_route(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(
        "data: {name: omniglot}\nmodel: {backbone: small_cnn}\n"
        "miner: {MultiSimilarityMiner: {epsilon: 0.25, distance: {LpDistance: {p: 1}}}}\n"
    )
    miner = builders.build_miner(load_config(tmp_path / "run.yaml"))
    assert type(miner) is miners.MultiSimilarityMiner and miner.epsilon == 0.25
    assert type(miner.distance) is distances.LpDistance and miner.distance.p == 1
    assert builders.build_miner(load_config(config())) is None


def test_sampler_route_fills_labels_and_batch_size() -> None:
    cfg = load_config(config(sampler={"MPerClassSampler": {"m": 2}}), ["train.batch_size=10"])
    labels = torch.arange(40) % NUM_CLASSES
    sampler = builders.build_sampler(cfg, labels)
    assert type(sampler) is samplers.MPerClassSampler
    assert sampler.m_per_class == 2 and sampler.batch_size == 10
    assert len(sampler) == sampler.list_size
    assert builders.build_sampler(load_config(config()), labels) is None


def test_embedding_regularizer_changes_the_loss_by_its_weighted_value(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(
        "data: {name: omniglot}\nmodel: {backbone: small_cnn}\n"
        "loss: {ProxyAnchorLoss: {margin: 0.1, alpha: 32}}\n"
    )
    plain = build_loss(load_config(tmp_path / "run.yaml"))
    cfg = load_config(
        tmp_path / "run.yaml",
        [
            "regularizers.embedding_regularizer={LpRegularizer: {p: 2}}",
            "+loss.ProxyAnchorLoss.embedding_reg_weight=0.5",
        ],
    )
    regularized = build_loss(cfg)
    assert type(regularized.embedding_regularizer) is regularizers.LpRegularizer
    assert regularized.embedding_regularizer.p == 2 and regularized.embedding_reg_weight == 0.5
    same_proxies(plain, regularized)
    embeddings, labels = batch()
    own_value = regularizers.LpRegularizer(p=2)(embeddings)
    # Independent reference: LpRegularizer is the mean L2 norm of the embeddings.
    assert float(own_value) == pytest.approx(float(embeddings.norm(dim=1).mean()), rel=1e-6)
    with torch.no_grad():
        difference = regularized(embeddings, labels) - plain(embeddings, labels)
    assert float(difference) == pytest.approx(0.5 * float(own_value), rel=1e-5, abs=1e-6)
    assert float(difference) > 1.0  # a real change, not rounding


def test_weight_regularizer_changes_the_loss_by_its_weighted_value() -> None:
    plain = build_loss(load_config(config()))
    cfg = load_config(
        config(
            loss={"ProxyAnchorLoss": {"weight_reg_weight": 0.25}},
            regularizers={"weight_regularizer": "LpRegularizer"},
        )
    )
    regularized = build_loss(cfg)
    assert type(regularized.weight_regularizer) is regularizers.LpRegularizer
    assert regularized.weight_reg_weight == 0.25 and regularized.embedding_regularizer is None
    same_proxies(plain, regularized)
    embeddings, labels = batch()
    own_value = regularizers.LpRegularizer()(regularized.proxies.detach())
    with torch.no_grad():
        difference = regularized(embeddings, labels) - plain(embeddings, labels)
    assert float(difference) == pytest.approx(0.25 * float(own_value), rel=1e-5, abs=1e-6)
    assert float(own_value) == pytest.approx(
        float(regularized.proxies.detach().norm(dim=1).mean()), rel=1e-6
    )


def test_both_regularizers_together() -> None:
    cfg = load_config(
        config(
            regularizers={
                "embedding_regularizer": {"LpRegularizer": {}},
                "weight_regularizer": {"pml.LpRegularizer": {"power": 2}},
            }
        )
    )
    loss = build_loss(cfg)
    assert type(loss.embedding_regularizer) is regularizers.LpRegularizer
    assert type(loss.weight_regularizer) is regularizers.LpRegularizer
    assert loss.weight_regularizer.power == 2


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (
            ["+loss.ProxyAnchorLoss.reducer={TripletMarginMiner: {}}"],
            RegistryError,
            r"loss\.ProxyAnchorLoss\.reducer names 'TripletMarginMiner', a miner; expected a "
            r"reducer such as 'MeanReducer'",
        ),
        (
            ["+loss.ProxyAnchorLoss.distance=5"],
            RegistryError,
            r"loss\.ProxyAnchorLoss\.distance must be a distance: a name such as "
            r"'CosineSimilarity'.*got 5",
        ),
        (
            ["+loss.ProxyAnchorLoss.distance=MeanReducer"],
            RegistryError,
            r"loss\.ProxyAnchorLoss\.distance names 'MeanReducer', a reducer",
        ),
        (
            ["+loss.ProxyAnchorLoss.distance={}"],
            RegistryError,
            r"loss\.ProxyAnchorLoss\.distance must be a spec",
        ),
        (
            ["+loss.ProxyAnchorLoss.num_classes=ten"],
            ConfigValueError,
            r"loss\.ProxyAnchorLoss\.num_classes='ten' must be an integer.*filled in",
        ),
        (
            ["+loss.ProxyAnchorLoss.embedding_size=true"],
            ConfigValueError,
            r"loss\.ProxyAnchorLoss\.embedding_size=True must be an integer",
        ),
        (["miner=MeanReducer"], RegistryError, r"miner names 'MeanReducer', a reducer"),
        (["loss={MultiSimilarityMiner: {}}"], RegistryError, r"loss names .*a miner"),
        (["sampler=LpDistance"], RegistryError, r"sampler names 'LpDistance', a distance"),
        (
            ["regularizers.embedding_regularizer=CosineSimilarity"],
            RegistryError,
            r"regularizers\.embedding_regularizer names 'CosineSimilarity', a distance",
        ),
        (["miner=5"], RegistryError, r"miner must be a spec"),
        (
            ["miner={MultiSimilarityMiner: 0.1}"],
            RegistryError,
            r"miner: the arguments of 'MultiSimilarityMiner' must be a mapping",
        ),
        (
            ["miner={MultiSimilarityMinr: {}}"],
            RegistryError,
            r"miner: unknown name 'MultiSimilarityMinr': did you mean 'MultiSimilarityMiner'",
        ),
        (
            ["loss={pml.ContrastiveLoss: {}}", "regularizers.weight_regularizer=LpRegularizer"],
            ConfigValueError,
            r"regularizers\.weight_regularizer is set, but the loss pml\.ContrastiveLoss takes "
            r"no weight_regularizer",
        ),
        (
            [
                "+loss.ProxyAnchorLoss.weight_regularizer=LpRegularizer",
                "regularizers.weight_regularizer=LpRegularizer",
            ],
            ConfigValueError,
            r"weight regularizer is set twice",
        ),
    ],
)
def test_wrong_kinds_are_refused_at_load_naming_the_key(
    overrides: list[str], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        load_config(config(), overrides)


def test_configured_num_classes_must_match_the_data() -> None:
    cfg = load_config(config(), ["+loss.ProxyAnchorLoss.num_classes=10"])
    with pytest.raises(
        ConfigValueError,
        match=r"loss\.ProxyAnchorLoss\.num_classes=10, but the train split has 5 classes",
    ):
        build_loss(cfg)
    same = load_config(config(), [f"+loss.ProxyAnchorLoss.num_classes={NUM_CLASSES}"])
    assert build_loss(same).num_classes == NUM_CLASSES


def test_constructor_errors_name_the_key() -> None:
    cfg = load_config(config(sampler={"MPerClassSampler": {"m": 3}}), ["train.batch_size=10"])
    with pytest.raises(RegistryError, match=r"could not build 'MPerClassSampler' \(sampler\)"):
        builders.build_sampler(cfg, torch.arange(40) % NUM_CLASSES)
    bad = load_config(config(regularizers={"embedding_regularizer": {"LpRegularizer": {"q": 1}}}))
    with pytest.raises(
        RegistryError,
        match=r"could not build 'LpRegularizer' \(regularizers\.embedding_regularizer\)",
    ):
        build_loss(bad)


def test_optimizer_route() -> None:
    cfg = load_config(config(), ["optimizer.name=SGD", "optimizer.lr=0.01"])
    model = {"embedder": torch.nn.Linear(2, EMBEDDING_SIZE)}
    optimizers, schedulers = builders.build_optimizers(cfg, model, build_loss(cfg))
    assert type(optimizers["embedder_optimizer"]) is torch.optim.SGD
    assert type(optimizers["metric_loss_optimizer"]) is torch.optim.SGD
    assert optimizers["metric_loss_optimizer"].param_groups[0]["lr"] == pytest.approx(1.0)
    assert set(schedulers) == {"embedder_scheduler_by_epoch", "metric_loss_scheduler_by_epoch"}


class Items(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def test_k_larger_than_the_test_split_is_refused_before_training() -> None:
    splits = EvalSplits({"test": Items(8)}, [("test", ["test"])], "test")
    builders.check_k_values((1, 2, 4, 7), splits)
    with pytest.raises(
        ConfigValueError,
        match=r"eval\.k_values: K=8 is larger than the evaluation data allows: the test split has "
        r"8 items, so a query can retrieve 7 \(itself excluded\).*eval\.k_values=\[1,2,4\]",
    ):
        builders.check_k_values((1, 2, 4, 8), splits)


def test_k_larger_than_the_gallery_is_refused() -> None:
    splits = EvalSplits(
        {"query": Items(50), "gallery": Items(20)}, [("query", ["gallery"])], "query"
    )
    builders.check_k_values((1, 10, 20), splits)
    with pytest.raises(ConfigValueError, match=r"K=30 .*gallery split has 20 items"):
        builders.check_k_values((1, 10, 20, 30), splits)


def test_build_datasets_checks_the_paper_ks(tmp_path: Path) -> None:
    """CUB's paper Ks (up to 8) against a test split of 2 classes x 3 images: refused at build."""
    from tests.fixtures.datasets import make_cub_tree

    make_cub_tree(tmp_path, class_ids=(1, 2, 101, 102), images_per_class=3, image_size=8)
    cfg = load_config(
        {"data": {"name": "cub200", "root": str(tmp_path)}, "model": {"backbone": "small_cnn"}}
    )
    with pytest.raises(ConfigValueError, match=r"K=8 .*retrieve 5 .*eval\.k_values=\[1,2,4\]"):
        builders.build_datasets(cfg)
