"""Config composition, overrides and key checks; the paper configs carry SPEC.md's numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from pml_proxy_anchor.training import ConfigKeyError, ConfigValueError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# SPEC.md section 2: backbone, batch, lr, warm, bn freeze, lr step, gamma.
PAPER_TABLE = {
    "cub200_bninception": ("cub200", "bn_inception", 180, 1e-4, 1, True, 10, 0.5),
    "cub200_resnet50": ("cub200", "resnet50", 120, 1e-4, 5, True, 5, 0.5),
    "cars196_bninception": ("cars196", "bn_inception", 180, 1e-4, 1, True, 20, 0.5),
    "cars196_resnet50": ("cars196", "resnet50", 120, 1e-4, 5, True, 10, 0.5),
    "sop_bninception": ("sop", "bn_inception", 180, 6e-4, 1, False, 20, 0.25),
    "inshop_bninception": ("inshop", "bn_inception", 180, 6e-4, 1, False, 20, 0.25),
}


@pytest.mark.parametrize("name", sorted(PAPER_TABLE))
def test_paper_config_carries_the_spec_table(name: str) -> None:
    dataset, backbone, batch, lr, warm, bn_freeze, step, gamma = PAPER_TABLE[name]
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert (cfg.data.name, cfg.model.backbone) == (dataset, backbone)
    assert cfg.train.batch_size == batch
    assert cfg.optimizer.lr == pytest.approx(lr, rel=1e-12)
    assert cfg.train.warm_epochs == warm
    assert cfg.train.bn_freeze is bn_freeze
    assert (cfg.scheduler.step, cfg.scheduler.gamma) == (step, gamma)
    # The recipe shared by all runs (SPEC.md section 2).
    assert cfg.train.epochs == 60 and cfg.model.embedding_size == 512
    assert dict(cfg.loss) == {"ProxyAnchorLoss": {"margin": 0.1, "alpha": 32}}
    assert cfg.optimizer.name == "AdamW" and cfg.optimizer.weight_decay == pytest.approx(1e-4)
    assert cfg.optimizer.proxy_lr_multiplier == 100 and cfg.train.grad_clip == 10
    assert cfg.sampler is None and cfg.miner is None


def test_overrides_are_parsed_as_yaml_and_defaults_compose(tmp_path: Path) -> None:
    cfg = load_config(
        CONFIGS / "cub200_bninception.yaml",
        ["train.epochs=3", "optimizer.lr=2e-5", "data.root=/d", "eval.k_values=[1, 4]"],
    )
    assert cfg.train.epochs == 3 and cfg.optimizer.lr == pytest.approx(2e-5)
    assert cfg.data.root == "/d" and list(cfg.eval.k_values) == [1, 4]
    assert cfg.scheduler.step == 10  # from the file, over base.yaml's value


def test_a_spec_naming_another_class_replaces_the_loss() -> None:
    cfg = load_config(
        CONFIGS / "cub200_bninception.yaml", ["loss={pml.ContrastiveLoss: {pos_margin: 0.9}}"]
    )
    assert dict(cfg.loss) == {"pml.ContrastiveLoss": {"pos_margin": 0.9}}
    same = load_config(CONFIGS / "cub200_bninception.yaml", ["loss.ProxyAnchorLoss.alpha=16"])
    assert dict(same.loss.ProxyAnchorLoss) == {"margin": 0.1, "alpha": 16}


def test_unknown_override_key_is_named_with_the_closest_key() -> None:
    with pytest.raises(ConfigKeyError, match=r"'train.epoch'.*train\.epochs"):
        load_config(CONFIGS / "cub200_bninception.yaml", ["train.epoch=3"])
    with pytest.raises(ConfigKeyError, match=r"'optimiser'.*optimizer"):
        load_config(CONFIGS / "cub200_bninception.yaml", ["optimiser.lr=3"])


def test_unknown_key_in_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        "defaults: [" + str(CONFIGS / "base") + "]\n"
        "data: {name: cub200}\nmodel: {backbone: resnet50}\ntrain: {warmup_epochs: 2}\n"
    )
    with pytest.raises(ConfigKeyError, match=r"'train.warmup_epochs'.*train\.warm_epochs"):
        load_config(tmp_path / "mine.yaml")


def test_plus_adds_a_key_that_does_not_exist() -> None:
    cfg = load_config(CONFIGS / "cub200_bninception.yaml", ["+model.extra=5"])
    assert cfg.model.extra == 5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", r"train\.epochs=0 must be >= 1"),
        ("optimizer.lr=-1", r"optimizer\.lr=-1 must be > 0"),
        ("train.batch_size=abc", r"train\.batch_size='abc' must be an integer"),
        ("optimizer.name=Adagrad", r"optimizer\.name='Adagrad' is not supported"),
        ("train.epochs", r"not of the form key=value"),
    ],
)
def test_bad_values_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigValueError, match=message):
        load_config(CONFIGS / "cub200_bninception.yaml", [override])


def test_missing_config_file_lists_the_known_ones() -> None:
    with pytest.raises(FileNotFoundError, match=r"cub200_bninception\.yaml"):
        load_config(CONFIGS / "cub_bninception.yaml")
