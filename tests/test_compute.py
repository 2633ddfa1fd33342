"""Torch threads: one precedence for every process (anchor_service.compute)."""

from __future__ import annotations

import torch

from anchor_service.compute import resolve_threads, start_threads, with_threads
from anchor_service.config import DeploymentConfig, ModelSpec, RunConfig, TrainScaling
from anchor_service.serve.deployments import replica_threads
from anchor_service.training.ray_trainer import worker_threads


def test_the_placement_wins_then_the_model_then_the_reserved_cpus():
    model = ModelSpec(torch_threads=3)
    assert resolve_threads(2, model, 4) == 2
    assert resolve_threads(None, model, 4) == 3
    assert resolve_threads(None, ModelSpec(), 1.5) == 2  # rounded up
    assert resolve_threads(None, ModelSpec(), 0) == 1  # at least one
    assert resolve_threads(None, ModelSpec(), None) is None  # a plain process: torch's default
    assert resolve_threads(None, None, 2) == 2


def test_pipeline_stages_and_serve_replicas_resolve_alike():
    from anchor_service.recipe.method import MethodRun

    cfg = RunConfig.model_validate(
        {
            "policy": {"torch_threads": 3},
            "pipeline": {"sample": {"torch_threads": 2}, "judge": {"num_cpus": 2}},
        }
    )
    run = MethodRun.__new__(MethodRun)
    run.cfg = cfg
    assert run._threads("sample", cfg.policy) == 2  # the stage's knob beats the model's
    assert run._threads("debate", cfg.policy) == 3
    assert run._threads("judge", ModelSpec()) == 2
    dep = DeploymentConfig(num_cpus=2)
    assert replica_threads(dep, cfg.policy) == 3
    assert replica_threads(dep.model_copy(update={"torch_threads": 1}), cfg.policy) == 1
    assert replica_threads(dep, ModelSpec()) == 2


def test_start_threads_sets_torch_once_and_the_engine_spec_carries_the_number():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    try:
        assert start_threads(other) == other
        assert torch.get_num_threads() == other
        assert start_threads(None) is None
        assert torch.get_num_threads() == other  # None leaves torch as it is
        assert worker_threads(TrainScaling(cpus_per_worker=1)) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    spec = ModelSpec()
    assert with_threads(spec, None) is spec
    assert with_threads(spec, 2).torch_threads == 2
