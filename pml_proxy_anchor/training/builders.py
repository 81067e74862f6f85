"""Build a run's pieces from its config: data, models, loss/miner/sampler, optimizers, tester.

Each builder reads its slice of the config and returns plain PML/torch objects:

- :func:`build_datasets`: ``data.build_datasets(cfg.data, backbone)`` and the evaluation splits
  (``{"test"}`` self-retrieval, or In-Shop's ``query`` against ``gallery``), with the Ks of
  Recall@K checked against them (:func:`check_k_values`) before anything trains;
- :func:`build_models`: ``models.build_model(cfg.model)`` -> ``{"trunk", "embedder"}`` on the
  device;
- :func:`build_loss`: ``registry.build(cfg.loss)`` with ``num_classes`` (from the train split) and
  ``embedding_size`` (from the model) filled in when the class names them, and
  ``cfg.regularizers`` passed as the loss's ``embedding_regularizer`` / ``weight_regularizer``;
- :func:`build_miner`, :func:`build_sampler` (labels and batch size filled in);

Every spec goes through :func:`pml_proxy_anchor.registry.build` (one parser, nested specs built,
each slot checked for its kind, errors naming the config key).
- :func:`build_train_sampler`: the sampler the trainer uses, split over the processes of a torchrun
  job (random batches: ``DistributedSampler``, also on one process; a configured sampler: its
  order, sharded);
- :func:`distribute_loss`, :func:`wrap_ddp`: several processes -- the loss of the global batch
  (replicated or class-sharded proxies, ``train.proxies``), trunk and embedder in DDP;
- :func:`build_optimizers`: trunk and embedder at ``lr`` and ``weight_decay``, the loss (proxies)
  at ``lr * proxy_lr_multiplier`` and ``proxy_weight_decay`` (null: ``weight_decay``, as in the
  paper; 0 keeps weight decay off the proxies), and one ``StepLR`` per optimizer named
  ``<name>_scheduler_by_epoch``;
- :func:`build_tester`: PML's ``GlobalEmbeddingSpaceTester`` with the Recall@K calculator;
- :func:`resolve_num_workers`: ``train.num_workers``, ``auto`` resolved for the device by
  :func:`pml_proxy_anchor.data.workers.default_num_workers`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_metric_learning import testers
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pml_proxy_anchor import distributed
from pml_proxy_anchor.training.config import REGULARIZERS, loss_spec, optimizer_class, to_dict
from pml_proxy_anchor.training.errors import ConfigValueError


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
    """The train split and the evaluation splits of ``cfg.data``; the Ks of Recall@K are
    checked against the evaluation splits (:func:`check_k_values`) before anything trains."""
    from pml_proxy_anchor.data import build_datasets as data_build

    datasets = data_build(_plain(cfg.data), str(cfg.model.backbone))
    splits = eval_splits(datasets)
    check_k_values(build_accuracy_calculator(cfg).k_values, splits)
    return datasets["train"], splits


def check_k_values(k_values: Sequence[int], splits: EvalSplits) -> None:
    """Refuse a K larger than the number of items a query can retrieve (self-retrieval: the
    split's size minus one; query/gallery: the gallery's size), naming ``eval.k_values``.

    Called by :func:`build_datasets`, so a bad K stops the run before epoch 1, not after it.
    """
    for query, references in splits.splits_to_eval:
        sizes = {name: len(splits.datasets[name]) for name in {query, *references}}
        retrievable = sum(sizes[name] for name in references) - (query in references)
        too_large = sorted(int(k) for k in k_values if int(k) > retrievable)
        if not too_large:
            continue
        how = (
            f"the {query} split has {sizes[query]} items, so a query can retrieve "
            f"{retrievable} (itself excluded)"
            if query in references
            else f"the {'+'.join(references)} split has {retrievable} items"
        )
        fits = [int(k) for k in k_values if int(k) <= retrievable]
        fix = (
            f"Fix: eval.k_values=[{','.join(str(k) for k in fits)}]"
            if 1 in fits
            else "Fix: evaluate on a larger split"
        )
        raise ConfigValueError(
            f"eval.k_values: K={too_large[-1]} is larger than the evaluation data allows: {how}; "
            f"Recall@K for K > {retrievable} is meaningless. {fix} (the Ks are the data set's "
            "paper Ks when eval.k_values is null)."
        )


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


def build_from_spec(spec: Any, where: str, kind: str | None = None, **fill: Any) -> Any:
    """``registry.build`` of ``spec`` (the config key ``where``, of ``kind``), with ``fill``
    passed where the class names the argument and the spec does not set it."""
    from pml_proxy_anchor import registry

    return registry.build(_plain(spec), kind=kind, where=where, defaults=fill)


def build_loss(
    cfg: DictConfig, num_classes: int, embedding_size: int, device: torch.device
) -> nn.Module:
    """The metric loss of ``cfg.loss`` with ``cfg.regularizers`` among its arguments, on
    ``device``; ``num_classes`` and ``embedding_size`` filled in (a value the config sets must
    equal them)."""
    spec = loss_spec(cfg)
    ((name, args),) = spec.items()
    actual = {"num_classes": int(num_classes), "embedding_size": int(embedding_size)}
    origin = {"num_classes": "the train split has", "embedding_size": "the model's embedding has"}
    for key, value in actual.items():
        if args.get(key) is not None and args[key] != value:
            unit = "classes" if key == "num_classes" else "dimensions"
            raise ConfigValueError(
                f"config key loss.{name}.{key}={args[key]!r}, but {origin[key]} {value} {unit}. "
                f"Fix: remove loss.{name}.{key} (it is filled in)."
            )
    for key in REGULARIZERS:  # built here so that an error names regularizers.<key>
        regularizer = OmegaConf.select(cfg, f"regularizers.{key}")
        if regularizer is not None:
            args[key] = build_from_spec(regularizer, f"regularizers.{key}", "regularizers")
    loss = build_from_spec(spec, "loss", "losses", **actual)
    return loss.to(device)


def build_miner(cfg: DictConfig) -> Any | None:
    """The tuple miner of ``cfg.miner``, or None."""
    return None if cfg.miner is None else build_from_spec(cfg.miner, "miner", "miners")


def build_sampler(cfg: DictConfig, labels: Any) -> Any | None:
    """The train sampler of ``cfg.sampler`` (labels and batch size filled in), or None
    (random batches, as in the paper)."""
    if cfg.sampler is None:
        return None
    return build_from_spec(
        cfg.sampler, "sampler", "samplers", labels=labels, batch_size=int(cfg.train.batch_size)
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
    optimizer_cls = optimizer_class(opt.name)
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


def resolve_num_workers(cfg: DictConfig, device: torch.device) -> int:
    """``train.num_workers``; ``auto``: :func:`~pml_proxy_anchor.data.workers.default_num_workers`
    for the training processes sharing this machine's CPUs: torchrun's ``LOCAL_WORLD_SIZE`` (one
    per GPU, or several CPU processes), else this one process (``gpus=1`` on a GPU, ``0`` on the
    CPU, which the rule counts alike: one CPU is left to the training process)."""
    from pml_proxy_anchor.data.workers import default_num_workers

    value = cfg.train.num_workers
    if value != "auto":
        return int(value)
    if distributed.get_world_size() > 1:
        return default_num_workers(gpus=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return default_num_workers(gpus=1 if device.type == "cuda" else 0)


def build_tester(
    cfg: DictConfig,
    device: torch.device,
    end_of_testing_hook: Any = None,
    num_workers: int | None = None,
) -> testers.GlobalEmbeddingSpaceTester:
    """PML's ``GlobalEmbeddingSpaceTester`` with the Recall@K calculator; ``num_workers``
    (default: :func:`resolve_num_workers`) loads the evaluation splits."""
    if num_workers is None:
        num_workers = resolve_num_workers(cfg, device)
    return testers.GlobalEmbeddingSpaceTester(
        batch_size=int(cfg.eval.batch_size),
        dataloader_num_workers=int(num_workers),
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
