"""Build a run's pieces from its config: data, models, loss/miner/sampler, optimizers, tester.

Each builder reads its slice of the config and returns plain PML/torch objects:

- :func:`build_datasets`: ``data.build_datasets(cfg.data, backbone)`` and the evaluation splits
  (``{"test"}`` self-retrieval, or In-Shop's ``query`` against ``gallery``);
- :func:`build_models`: ``models.build_model(cfg.model)`` -> ``{"trunk", "embedder"}`` on the
  device;
- :func:`build_loss`: ``registry.build(cfg.loss)`` with ``num_classes`` (from the train split) and
  ``embedding_size`` (from the model) filled in when the class takes them, plus the regularizers;
- :func:`build_miner`, :func:`build_sampler` (labels and batch size filled in);
- :func:`build_train_sampler`: the sampler the trainer uses, split over the processes of a torchrun
  job (random batches: ``DistributedSampler``, also on one process; a configured sampler: its
  order, sharded);
- :func:`distribute_loss`, :func:`wrap_ddp`: several processes -- the loss of the global batch
  (replicated or class-sharded proxies, ``train.proxies``), trunk and embedder in DDP;
- :func:`build_optimizers`: trunk and embedder at ``lr`` and ``weight_decay``, the loss (proxies)
  at ``lr * proxy_lr_multiplier`` and ``proxy_weight_decay`` (null: ``weight_decay``, as in the
  paper; 0 keeps weight decay off the proxies), and one ``StepLR`` per optimizer named
  ``<name>_scheduler_by_epoch``;
- :func:`build_tester`: PML's ``GlobalEmbeddingSpaceTester`` with the Recall@K calculator.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from pytorch_metric_learning import testers
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pml_proxy_anchor import distributed
from pml_proxy_anchor.training.config import to_dict


@dataclass
class EvalSplits:
    """The evaluation data of a run, in the form PML's tester and HookContainer take."""

    datasets: dict[str, Any]  # split name -> Dataset
    splits_to_eval: list[tuple[str, list[str]]]
    query_split: str  # the split whose Recall@1 picks the best epoch


def _plain(section: Any) -> Any:
    if isinstance(section, DictConfig):
        return to_dict(section)
    return section


def model_config(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.model`` with ``bn_freeze`` from ``train.bn_freeze`` (the models package freezes BN)."""
    model_cfg = dict(_plain(cfg.model))
    model_cfg.setdefault("bn_freeze", bool(cfg.train.bn_freeze))
    return model_cfg


def build_datasets(cfg: DictConfig) -> tuple[Any, EvalSplits]:
    """The train split and the evaluation splits of ``cfg.data``."""
    from pml_proxy_anchor.data import build_datasets as data_build

    datasets = data_build(_plain(cfg.data), str(cfg.model.backbone))
    return datasets["train"], eval_splits(datasets)


def eval_splits(datasets: Mapping[str, Any]) -> EvalSplits:
    """Query/gallery (In-Shop) when both exist, else self-retrieval on ``test``."""
    if "query" in datasets and "gallery" in datasets:
        return EvalSplits(
            {"query": datasets["query"], "gallery": datasets["gallery"]},
            [("query", ["gallery"])],
            "query",
        )
    if "test" not in datasets:
        raise ValueError(
            f"the data set builder returned splits {sorted(datasets)}; expected 'train' plus "
            "'test' (self-retrieval) or 'query' and 'gallery'."
        )
    return EvalSplits({"test": datasets["test"]}, [("test", ["test"])], "test")


def build_models(cfg: DictConfig, device: torch.device) -> dict[str, nn.Module]:
    """``{"trunk", "embedder"}`` from ``models.build_model``, moved to ``device``."""
    from pml_proxy_anchor.models import build_model

    trunk, embedder = build_model(model_config(cfg))
    return {"trunk": trunk.to(device), "embedder": embedder.to(device)}


def embedding_size(embedder: nn.Module, cfg: DictConfig) -> int:
    """The embedder's output size (its ``embedding_size`` attribute, else the config's)."""
    return int(getattr(embedder, "embedding_size", None) or cfg.model.embedding_size)


def _spec_parts(spec: Any, section: str) -> tuple[str, dict[str, Any]]:
    spec = _plain(spec)
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and len(spec) == 1:
        name, kwargs = next(iter(spec.items()))
        return str(name), dict(kwargs or {})
    raise ValueError(
        f"config section {section} must be a registry spec: a class name such as "
        f"'ProxyAnchorLoss' or a one-key mapping {{Name: {{kwargs}}}}; got {spec!r}."
    )


def _accepts(cls: type, name: str) -> bool:
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters


def build_from_spec(spec: Any, section: str, **fill: Any) -> Any:
    """``registry.build`` of ``spec`` with ``fill`` added where the class accepts it and the
    spec does not set it."""
    from pml_proxy_anchor import registry

    name, kwargs = _spec_parts(spec, section)
    cls = registry.get(name)
    for key, value in fill.items():
        if key not in kwargs and _accepts(cls, key):
            kwargs[key] = value
    objects = {k: v for k, v in kwargs.items() if not _is_plain(v)}
    plain = {k: v for k, v in kwargs.items() if _is_plain(v)}
    built = registry.build({name: plain}) if not objects else cls(**plain, **objects)
    return built


def _is_plain(value: Any) -> bool:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if isinstance(value, Mapping):
        return all(_is_plain(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return False


def build_loss(
    cfg: DictConfig, num_classes: int, embedding_size: int, device: torch.device
) -> nn.Module:
    """The metric loss of ``cfg.loss`` (with ``cfg.regularizers``), on ``device``."""
    regularizers = {
        key: build_from_spec(spec, f"regularizers.{key}")
        for key, spec in (_plain(cfg.regularizers) or {}).items()
        if spec is not None
    }
    loss = build_from_spec(
        cfg.loss,
        "loss",
        num_classes=int(num_classes),
        embedding_size=int(embedding_size),
        **regularizers,
    )
    return loss.to(device)


def build_miner(cfg: DictConfig) -> Any | None:
    """The tuple miner of ``cfg.miner``, or None."""
    return None if cfg.miner is None else build_from_spec(cfg.miner, "miner")


def build_sampler(cfg: DictConfig, labels: Any) -> Any | None:
    """The train sampler of ``cfg.sampler`` (labels and batch size filled in), or None
    (random batches, as in the paper)."""
    if cfg.sampler is None:
        return None
    return build_from_spec(
        cfg.sampler, "sampler", labels=labels, batch_size=int(cfg.train.batch_size)
    )


def build_train_sampler(cfg: DictConfig, train_set: Any) -> Any:
    """The train sampler for this process.

    Without ``cfg.sampler``: ``DistributedSampler(shuffle=True, seed=train.seed)`` over the
    processes of the job (1 process: the whole split); its ``set_epoch`` reshuffles every epoch,
    and the N local batches of a step are the global batch a single process would see. With
    ``cfg.sampler`` (e.g. PML's ``MPerClassSampler``, built for the global batch): the sampler
    itself on one process, its order split over the processes otherwise (every process draws the
    same order: the trainer reseeds them identically per epoch).
    """
    sampler = build_sampler(cfg, train_set.labels)
    if sampler is None:
        return distributed.distributed_sampler(train_set, shuffle=True, seed=int(cfg.train.seed))
    if distributed.get_world_size() == 1:
        return sampler
    if isinstance(sampler, torch.utils.data.BatchSampler):
        raise ValueError(
            f"sampler {type(sampler).__name__} yields whole batches, which cannot be split over "
            f"{distributed.get_world_size()} processes. Fix: use a per-sample sampler such as "
            "pml.MPerClassSampler, or train on one process."
        )
    return distributed.ShardedSampler(sampler)


def distribute_loss(cfg: DictConfig, loss: nn.Module) -> nn.Module:
    """``loss`` as the loss of the global batch of all processes (``train.proxies`` replicated
    or class-sharded); ``loss`` itself on one process."""
    if distributed.get_world_size() == 1:
        return loss
    return distributed.distribute_loss(loss, proxies=str(cfg.train.proxies))


def wrap_ddp(models: Mapping[str, nn.Module], device: torch.device) -> dict[str, nn.Module]:
    """The models with trainable parameters wrapped in ``DistributedDataParallel`` (gradients
    averaged over the processes); empty on one process. Call before any freeze."""
    if distributed.get_world_size() == 1:
        return {}
    device_ids = [device.index] if device.type == "cuda" else None
    return {
        name: DistributedDataParallel(module, device_ids=device_ids)
        for name, module in models.items()
        if any(p.requires_grad for p in module.parameters())
    }


def has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def build_optimizers(
    cfg: DictConfig, models: Mapping[str, nn.Module], loss: nn.Module
) -> tuple[dict[str, torch.optim.Optimizer], dict[str, Any]]:
    """PML ``optimizers`` and ``lr_schedulers`` dicts (StepLR stepped once per epoch)."""
    opt = cfg.optimizer
    optimizer_cls = getattr(torch.optim, str(opt.name))
    decay = float(opt.weight_decay)
    proxy_decay = opt.get("proxy_weight_decay")
    lrs = {name: float(opt.lr) for name in models}
    decays = {name: decay for name in models}
    modules: dict[str, nn.Module] = dict(models)
    if has_parameters(loss):
        modules["metric_loss"] = loss
        lrs["metric_loss"] = float(opt.lr) * float(opt.proxy_lr_multiplier)
        decays["metric_loss"] = decay if proxy_decay is None else float(proxy_decay)
    optimizers = {
        f"{name}_optimizer": optimizer_cls(
            module.parameters(), lr=lrs[name], weight_decay=decays[name]
        )
        for name, module in modules.items()
        if has_parameters(module)
    }
    schedulers = {
        f"{key[: -len('_optimizer')]}_scheduler_by_epoch": torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=int(cfg.scheduler.step), gamma=float(cfg.scheduler.gamma)
        )
        for key, optimizer in optimizers.items()
    }
    return optimizers, schedulers


def build_accuracy_calculator(cfg: DictConfig) -> Any:
    """Recall@K for ``cfg.data.name`` (its paper K values) or for ``cfg.eval.k_values``."""
    from pml_proxy_anchor.evaluation.presets import calculator_for

    if cfg.eval.k_values:
        return calculator_for(str(cfg.data.name), k_values=tuple(int(k) for k in cfg.eval.k_values))
    return calculator_for(str(cfg.data.name))


def build_tester(
    cfg: DictConfig, device: torch.device, end_of_testing_hook: Any = None
) -> testers.GlobalEmbeddingSpaceTester:
    """PML's ``GlobalEmbeddingSpaceTester`` with the Recall@K calculator."""
    return testers.GlobalEmbeddingSpaceTester(
        batch_size=int(cfg.eval.batch_size),
        dataloader_num_workers=int(cfg.train.num_workers),
        data_device=device,
        accuracy_calculator=build_accuracy_calculator(cfg),
        end_of_testing_hook=end_of_testing_hook,
    )


def split_metrics(accuracies: Mapping[str, Any]) -> dict[str, float]:
    """PML's per-split accuracies (``recall_at_1_level0``, ...) as ``{"recall_at_1": ...}``."""
    out: dict[str, float] = {}
    for key, value in accuracies.items():
        if key == "epoch":
            continue
        name = key[: -len("_level0")] if key.endswith("_level0") else key
        out[name] = float(value)
    return out
