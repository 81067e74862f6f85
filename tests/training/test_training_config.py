"""Config composition, overrides and key checks; the paper configs carry docs/paper.md's numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from pml_proxy_anchor.training import ConfigKeyError, ConfigValueError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# docs/paper.md section 2: backbone, batch, lr, warm, bn freeze, lr step, gamma.
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
    # The recipe shared by all runs (docs/paper.md section 2).
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
        ("optimizer.name=Adagrad", r"unknown optimizer\.name 'Adagrad'.*Known: Adam, AdamW"),
        ("optimizer.name=adamw", r"did you mean 'Adam', 'AdamW'"),
        ("optimizer.lr=1e38", r"optimizer\.lr=1e\+38 must be <= 1e\+06.*overflow"),
        ("optimizer.lr=.inf", r"optimizer\.lr=inf must be a finite number"),
        ("optimizer.lr=.nan", r"optimizer\.lr=nan must be a finite number"),
        ("optimizer.proxy_lr_multiplier=1e7", r"proxy_lr_multiplier=10000000\.0 must be <= 1e\+06"),
        ("optimizer.weight_decay=-1", r"weight_decay=-1 must be >= 0"),
        ("train.grad_clip=.inf", r"train\.grad_clip=inf must be a finite number"),
        ("train.dist_timeout_s=.inf", r"dist_timeout_s=inf must be a finite number"),
        ("train.bn_freeze=maybe", r"train\.bn_freeze='maybe' must be true or false"),
        ("train.epochs=2.5", r"train\.epochs=2\.5 must be an integer"),
        ("train.epochs=true", r"train\.epochs=True must be an integer"),
        ("run_dir=5", r"run_dir=5 must be a directory path"),
        (
            "eval.k_values=[2, 4]",
            r"eval\.k_values must contain 1: the best epoch is chosen by "
            r"Recall@1; got \[2, 4\]\. Fix: eval\.k_values=\[1,2,4\]",
        ),
        ("eval.k_values=[]", r"eval\.k_values=\[\] must be a non-empty list"),
        ("eval.k_values=[1, 0]", r"integers >= 1"),
        ("eval.k_values=[1, 2.5]", r"integers >= 1"),
        ("eval.k_values=8", r"eval\.k_values=8 must be a list of Ks"),
        ("loss=null", r"loss is null; a run needs a loss"),
        ("train=5", r"config section train .* must be a mapping"),
        ("=5", r"empty key part"),
        ("train.epochs", r"not of the form key=value"),
    ],
)
def test_bad_values_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigValueError, match=message):
        load_config(CONFIGS / "cub200_bninception.yaml", [override])


def test_missing_config_file_lists_the_known_ones() -> None:
    with pytest.raises(FileNotFoundError, match=r"cub200_bninception\.yaml"):
        load_config(CONFIGS / "cub_bninception.yaml")


def test_plus_refuses_a_key_that_exists() -> None:
    with pytest.raises(
        ConfigKeyError,
        match=r"model\.embedding_size already exists \(value 512\).*use model\.embedding_size=32",
    ):
        load_config(CONFIGS / "cub200_bninception.yaml", ["+model.embedding_size=32"])
    with pytest.raises(ConfigKeyError, match=r"use model\.channels=32 to change it"):
        load_config(CONFIGS / "omniglot.yaml", ["+model.channels=32"])


def test_plus_cannot_add_an_unknown_key_to_a_closed_section() -> None:
    with pytest.raises(ConfigKeyError, match=r"'train\.epoch'.*train\.epochs"):
        load_config(CONFIGS / "cub200_bninception.yaml", ["+train.epoch=3"])


def test_unknown_spec_argument_hints_at_plus() -> None:
    with pytest.raises(ConfigKeyError, match=r"write \+loss\.ProxyAnchorLoss\.reducer=MeanReducer"):
        load_config(CONFIGS / "omniglot.yaml", ["loss.ProxyAnchorLoss.reducer=MeanReducer"])


def test_regularizer_typo_is_named() -> None:
    with pytest.raises(ConfigKeyError, match=r"Did you mean regularizers\.embedding_regularizer"):
        load_config(CONFIGS / "omniglot.yaml", ["regularizers.embeding_regularizer=LpRegularizer"])


def test_config_errors_are_user_errors() -> None:
    from pml_proxy_anchor.errors import UserError
    from pml_proxy_anchor.training import errors

    for name in (
        "ConfigKeyError",
        "ConfigValueError",
        "ConfigFileNotFoundError",
        "ConfigMismatchError",
        "RunDirectoryExistsError",
        "CheckpointNotFoundError",
        "NonFiniteLossError",
        "DeviceNotAvailableError",
    ):
        assert issubclass(getattr(errors, name), UserError), name
    assert issubclass(errors.ConfigFileNotFoundError, FileNotFoundError)
    assert issubclass(errors.ConfigValueError, ValueError)


def test_a_copied_config_without_base_uses_the_builtin_base(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text((CONFIGS / "omniglot.yaml").read_text())
    mine = load_config(tmp_path / "mine.yaml")
    assert mine == load_config(CONFIGS / "omniglot.yaml")


def test_a_missing_defaults_file_names_the_list_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("defaults: [mybase]\ndata: {name: cub200}\n")
    from pml_proxy_anchor.errors import UserError

    with pytest.raises(FileNotFoundError) as caught:
        load_config(tmp_path / "mine.yaml")
    message = str(caught.value)
    assert isinstance(caught.value, UserError)
    assert f"config file {tmp_path / 'mine.yaml'} lists 'mybase' in its `defaults:`" in message
    assert (
        str(tmp_path / "mybase") in message and "Fix: put mybase.yaml next to mine.yaml" in message
    )
    assert "built-in config: base, " in message


@pytest.mark.parametrize("defaults", ["5", "[[base]]", "{a: 1}"])
def test_defaults_must_be_a_list_of_names(tmp_path: Path, defaults: str) -> None:
    (tmp_path / "mine.yaml").write_text(f"defaults: {defaults}\n")
    with pytest.raises(ConfigValueError, match=r"`defaults:` must be a list of config files"):
        load_config(tmp_path / "mine.yaml")


def test_a_config_is_a_path_a_name_or_a_mapping() -> None:
    with pytest.raises(ConfigValueError, match="a file path, a built-in config name or a mapping"):
        load_config(5)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="is a directory"):
        load_config(CONFIGS)


def test_a_folder_named_like_a_builtin_config_does_not_hide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep directory ``omniglot/`` in the working directory is not the config ``omniglot``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "omniglot" / "alpha_delta").mkdir(parents=True)
    assert load_config("omniglot").data.name == "omniglot"
    assert load_config("omniglot").train.epochs == 12  # the built-in
    (tmp_path / "omniglot.yaml").write_text(
        "defaults: [base]\ndata: {name: omniglot}\nmodel: {backbone: small_cnn}\n"
        "train: {epochs: 3}\n"
    )
    assert load_config("omniglot").train.epochs == 3  # a file of that name does win


def test_every_key_of_the_data_set_can_be_set_without_plus() -> None:
    cfg = load_config(CONFIGS / "cub200_bninception.yaml", ["data.skip_corrupt=true"])
    assert cfg.data.skip_corrupt is True
    assert cfg.data.crop_size is None and cfg.data.root is None  # the data set's defaults
    # + still adds a key the config does not set (the data set's default is not a setting).
    assert load_config(CONFIGS / "omniglot.yaml", ["+data.max_classes=4"]).data.max_classes == 4
    assert load_config(CONFIGS / "omniglot.yaml", ["data.max_classes=4"]).data.max_classes == 4
    # A file's explicit value is a setting: + refuses it.
    with pytest.raises(ConfigKeyError, match=r"use data\.image_size=32 to change it"):
        load_config(CONFIGS / "omniglot.yaml", ["+data.image_size=32"])


def test_data_keys_follow_an_overridden_data_name() -> None:
    cfg = load_config(
        {"data": {"name": "omniglot"}, "model": {"backbone": "small_cnn"}},
        ["data.name=cub200", "data.skip_corrupt=true"],
    )
    assert cfg.data.name == "cub200" and cfg.data.skip_corrupt is True


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.skip_corupt=true", r"'data\.skip_corupt'.*Did you mean data\.skip_corrupt\?"),
        ("+data.skip_corupt=true", r"unknown key data\.skip_corupt for data set 'cub200'"),
        ("data.crop_size=22.5", r"data\.crop_size of data set 'cub200'"),
        ("data.name=cub2000", r"unknown data\.name 'cub2000'\. Did you mean 'cub200'\?"),
    ],
)
def test_data_keys_are_checked_at_load(override: str, message: str) -> None:
    from pml_proxy_anchor.errors import UserError

    with pytest.raises(UserError, match=message):
        load_config(CONFIGS / "cub200_bninception.yaml", [override])


def test_omniglot_data_typos_are_named() -> None:
    from pml_proxy_anchor.errors import UserError

    with pytest.raises(UserError, match=r"data\.setting of data set 'omniglot'"):
        load_config(CONFIGS / "omniglot.yaml", ["data.setting=unseen"])
    with pytest.raises(UserError, match=r"Did you mean data\.class_rotations"):
        load_config(CONFIGS / "omniglot.yaml", ["data.class_rotation=2"])


# ---------------------------------------------------------------------- Hydra composition
def test_a_copied_config_prefers_a_sibling_base_yaml(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text((CONFIGS / "omniglot.yaml").read_text())
    base = (CONFIGS / "base.yaml").read_text()
    assert "  seed: 1\n" in base
    (tmp_path / "base.yaml").write_text(base.replace("  seed: 1\n", "  seed: 7\n"))
    assert load_config(tmp_path / "mine.yaml").train.seed == 7  # the sibling base.yaml
    assert load_config(CONFIGS / "omniglot.yaml").train.seed == 1  # the built-in base


def test_self_placed_first_lets_the_defaults_override_the_file(tmp_path: Path) -> None:
    body = "data: {name: omniglot}\nmodel: {backbone: small_cnn}\ntrain: {epochs: 3}\n"
    (tmp_path / "last.yaml").write_text("defaults: [base]\n" + body)
    (tmp_path / "first.yaml").write_text("defaults: [_self_, base]\n" + body)
    assert load_config(tmp_path / "last.yaml").train.epochs == 3  # _self_ last: the default
    assert load_config(tmp_path / "first.yaml").train.epochs == 60  # base.yaml's value wins


def test_a_group_entry_with_a_global_package_is_composed(tmp_path: Path) -> None:
    (tmp_path / "budget").mkdir()
    (tmp_path / "budget" / "short.yaml").write_text("# @package _global_\ntrain: {epochs: 2}\n")
    (tmp_path / "budget" / "long.yaml").write_text("# @package _global_\ntrain: {epochs: 90}\n")
    (tmp_path / "mine.yaml").write_text(
        "defaults: [base, {budget: short}]\ndata: {name: omniglot}\nmodel: {backbone: small_cnn}\n"
    )
    assert load_config(tmp_path / "mine.yaml").train.epochs == 2
    (tmp_path / "typo.yaml").write_text("defaults: [base, {budget: shrot}]\n")
    with pytest.raises(FileNotFoundError, match=r"lists 'budget/shrot'.*Did you mean short\?"):
        load_config(tmp_path / "typo.yaml")


@pytest.mark.parametrize(
    ("entry", "siblings", "message"),
    [
        ("bse", (), r"lists 'bse' in its `defaults:`.*Did you mean base\?.*built-in config: base,"),
        ("cub200_bninceptoin", (), r"Did you mean cub200_bninception or "),
        ("my_bsae", ("my_base",), r"Did you mean my_base or base\?"),
    ],
)
def test_a_typo_in_defaults_names_the_closest_files(
    tmp_path: Path, entry: str, siblings: tuple[str, ...], message: str
) -> None:
    from pml_proxy_anchor.training import ConfigFileNotFoundError

    for name in siblings:
        (tmp_path / f"{name}.yaml").write_text("train: {epochs: 2}\n")
    (tmp_path / "mine.yaml").write_text(f"defaults: [{entry}]\ndata: {{name: omniglot}}\n")
    with pytest.raises(ConfigFileNotFoundError, match=message):
        load_config(tmp_path / "mine.yaml")


def test_defaults_that_include_each_other_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("defaults: [b]\n")
    (tmp_path / "b.yaml").write_text("defaults: [a]\n")
    with pytest.raises(ConfigValueError, match=r"include each other in a cycle"):
        load_config(tmp_path / "a.yaml")


def test_a_file_that_is_no_mapping_is_named(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigValueError, match=r"mine\.yaml must hold a mapping"):
        load_config(tmp_path / "mine.yaml")


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("optimizer.lr=1e-3", "optimizer.lr", 1e-3),
        ("train.grad_clip=null", "train.grad_clip", None),
        ("train.epochs=int(3.0)", "train.epochs", 3),
        ("++train.epochs=4", "train.epochs", 4),
        ("++model.extra=1", "model.extra", 1),
        ("run_dir='runs/a,b'", "run_dir", "runs/a,b"),  # a quoted string keeps its comma
        ("run_dir=runs/lr=1e-4", "run_dir", "runs/lr=1e-4"),  # not Hydra's grammar: YAML
        ("data.root='/my data'", "data.root", "/my data"),
        ("train.epochs=${train.seed}", "train.epochs", 1),  # an interpolation, resolved
        ("eval.k_values=[1, 2, 4]", "eval.k_values", [1, 2, 4]),
        (
            "loss={ProxyAnchorLoss: {alpha: 16}}",  # the same class: merged
            "loss",
            {"ProxyAnchorLoss": {"margin": 0.1, "alpha": 16}},
        ),
    ],
)
def test_overrides_use_hydras_grammar(override: str, key: str, value: object) -> None:
    from omegaconf import OmegaConf

    cfg = load_config(CONFIGS / "omniglot.yaml", [override])
    found = OmegaConf.select(cfg, key)
    assert (OmegaConf.to_container(found) if OmegaConf.is_config(found) else found) == value


def test_tilde_deletes_a_key_but_not_a_key_of_the_schema() -> None:
    cfg = load_config(CONFIGS / "omniglot.yaml", ["~model.pool_last"])
    assert "pool_last" not in cfg.model and "channels" in cfg.model
    gone = load_config(CONFIGS / "omniglot.yaml", ["~loss.ProxyAnchorLoss.alpha"])
    assert dict(gone.loss.ProxyAnchorLoss) == {"margin": 0.1}  # the class default applies
    with pytest.raises(ConfigKeyError, match=r"train\.seed is a key of the config schema.*is 1"):
        load_config(CONFIGS / "omniglot.yaml", ["~train.seed"])
    with pytest.raises(ConfigValueError, match=r"model\.pool_last is False, not True"):
        load_config(CONFIGS / "omniglot.yaml", ["~model.pool_last=true"])
    with pytest.raises(ConfigKeyError, match=r"'model\.pool_lst'.*Did you mean model\.pool_last"):
        load_config(CONFIGS / "omniglot.yaml", ["~model.pool_lst"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.k_values=1,2,4", r"several values.*Fix: a list is eval\.k_values=\[1,2,4\]"),
        ("train.seed=range(1,4)", r"several values .*pml-proxy-anchor sweep"),
        ("model@x=1", r"a package \(@\.\.\.\) applies to config groups"),
        ("train.epochs=[1", r"not valid in Hydra's override grammar: .*\[1"),
    ],
)
def test_overrides_outside_a_single_runs_grammar_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigValueError, match=message):
        load_config(CONFIGS / "omniglot.yaml", [override])


def test_loading_writes_nothing_and_keeps_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    from hydra.core.global_hydra import GlobalHydra
    from hydra.version import VersionBase

    monkeypatch.chdir(tmp_path)
    version_base = VersionBase.instance().version_base
    initialized = GlobalHydra.instance().is_initialized()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Hydra warning (`_self_`, version_base) either
        cfg = load_config("omniglot", ["train.epochs=1"])
    assert cfg.train.epochs == 1
    assert Path.cwd() == tmp_path and list(tmp_path.iterdir()) == []  # no outputs/, no logs
    assert VersionBase.instance().version_base is version_base
    assert GlobalHydra.instance().is_initialized() is initialized


def test_load_config_works_inside_a_running_hydra_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hydra task function (as a sweep job is) loads a training config: Hydra's global state
    (its config, the working directory) is the job's before and after."""
    import sys

    import hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    (tmp_path / "job.yaml").write_text("epochs: 2\n")
    seen: dict[str, object] = {}

    @hydra.main(version_base="1.3", config_path=str(tmp_path), config_name="job")
    def task(job_cfg: object) -> None:
        seen["hydra"] = GlobalHydra.instance().is_initialized()
        run_dir = HydraConfig.get().run.dir
        seen["cfg"] = load_config("omniglot", [f"train.epochs={job_cfg.epochs}"])  # type: ignore[attr-defined]
        seen["same_job"] = HydraConfig.get().run.dir == run_dir
        seen["cwd"] = Path.cwd()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "job",
            f"hydra.run.dir={tmp_path / 'job_out'}",
            "hydra.output_subdir=null",
            "hydra/job_logging=none",
            "hydra/hydra_logging=none",
        ],
    )
    try:
        task()
    finally:
        GlobalHydra.instance().clear()
    assert seen["hydra"] is True and seen["same_job"] is True and seen["cwd"] == tmp_path
    assert seen["cfg"].train.epochs == 2 and seen["cfg"].data.name == "omniglot"  # type: ignore[attr-defined]
