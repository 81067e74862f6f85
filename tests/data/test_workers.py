"""The DataLoader worker rule (``min(8, cpus // gpus - 1)``, at least 0) and the loader settings."""

from __future__ import annotations

import pytest
import torch

from pml_proxy_anchor.data import DataConfigError
from pml_proxy_anchor.data import workers as workers_module
from pml_proxy_anchor.data.workers import (
    MAX_WORKERS,
    PREFETCH_FACTOR,
    available_cpus,
    default_num_workers,
    loader_kwargs,
)


@pytest.mark.parametrize(
    ("cpus", "gpus", "expected"),
    [
        (1, 0, 0),  # one core: the main process loads
        (1, 1, 0),
        (2, 0, 1),  # this development machine
        (2, 1, 1),
        (4, 1, 3),
        (9, 1, 8),
        (16, 1, 8),  # capped at MAX_WORKERS
        (128, 1, 8),
        (16, 2, 7),  # 8 CPUs per process
        (16, 4, 3),
        (16, 8, 1),
        (16, 16, 0),  # one CPU per process
        (4, 8, 0),  # fewer CPUs than GPUs: nothing to spare
    ],
)
def test_rule_on_constructed_machines(cpus: int, gpus: int, expected: int) -> None:
    assert default_num_workers(cpus, gpus) == expected
    assert MAX_WORKERS == 8


def test_undetected_counts_come_from_the_affinity_mask_and_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers_module, "available_cpus", lambda: 6)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert default_num_workers() == 2  # 6 // 2 - 1
    assert default_num_workers(gpus=0) == 5
    assert default_num_workers(cpu_count=32) == 8
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert default_num_workers() == 5


def test_available_cpus_is_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers_module.os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert available_cpus() == 3
    monkeypatch.delattr(workers_module.os, "sched_getaffinity")
    monkeypatch.setattr(workers_module.os, "cpu_count", lambda: None)
    assert available_cpus() == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cpu_count": 0}, r"cpu_count must be an integer >= 1, got 0"),
        ({"cpu_count": -4}, r"cpu_count must be an integer >= 1, got -4"),
        ({"cpu_count": 2.5}, r"cpu_count must be an integer >= 1, got 2.5"),
        ({"cpu_count": "8"}, r"cpu_count must be an integer >= 1, got '8'"),
        ({"cpu_count": True}, r"cpu_count must be an integer >= 1, got True"),
        ({"cpu_count": 8, "gpus": -1}, r"gpus must be an integer >= 0, got -1"),
        ({"cpu_count": 8, "gpus": 1.0}, r"gpus must be an integer >= 0, got 1.0"),
    ],
)
def test_bad_counts_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(DataConfigError, match=message + r"\. Fix: pass a whole number"):
        default_num_workers(**kwargs)


def test_loader_kwargs_without_workers() -> None:
    assert loader_kwargs(0, "cpu") == {"num_workers": 0, "pin_memory": False}
    # pinning only helps a copy to a GPU; PyTorch refuses the worker options without workers
    assert loader_kwargs(0, "cuda") == {"num_workers": 0, "pin_memory": True}


def test_loader_kwargs_with_workers() -> None:
    expected = {
        "num_workers": 3,
        "pin_memory": True,
        "persistent_workers": True,
        "prefetch_factor": PREFETCH_FACTOR,
    }
    assert loader_kwargs(3, "cuda:1") == expected
    assert loader_kwargs(3, torch.device("cuda")) == expected
    assert loader_kwargs(1, "cpu", persistent_workers=False) == {
        "num_workers": 1,
        "pin_memory": False,
        "persistent_workers": False,
        "prefetch_factor": 2,
    }


def test_loader_kwargs_build_a_working_loader() -> None:
    data = torch.utils.data.TensorDataset(torch.arange(6.0))
    loader = torch.utils.data.DataLoader(data, batch_size=2, **loader_kwargs(0, "cpu"))
    assert [b[0].tolist() for b in loader] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]


@pytest.mark.parametrize(
    ("num_workers", "device", "message"),
    [
        (-1, "cpu", r"num_workers must be an integer >= 0, got -1"),
        ("auto", "cpu", r"num_workers must be an integer >= 0, got 'auto'"),
        (2, "gpu", r"device 'gpu' is not a torch device; expected e.g. 'cpu', 'cuda'"),
        (2, 3.5, r"device 3.5 is not a torch device"),
    ],
)
def test_loader_kwargs_refuse_bad_input(num_workers: object, device: object, message: str) -> None:
    with pytest.raises(DataConfigError, match=message):
        loader_kwargs(num_workers, device)  # type: ignore[arg-type]
