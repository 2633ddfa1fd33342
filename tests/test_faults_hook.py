"""The kill hook (anchor_service/faults.py) is inert unless ANCHOR_KILL_AT names the step."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from anchor_service.faults import KILL_AT_ENV, kill_point, kill_target


def test_unset_or_another_step_is_inert(monkeypatch):
    monkeypatch.delenv(KILL_AT_ENV, raising=False)
    assert kill_target("sample") is None
    kill_point("sample", 10**6)  # still alive
    monkeypatch.setenv(KILL_AT_ENV, "judge:1")
    assert kill_target("sample") is None
    assert kill_target("judge") == 1
    monkeypatch.setenv(KILL_AT_ENV, "eval-scores-sft:3")
    assert kill_target("eval-scores-sft") == 3


@pytest.mark.parametrize("spec", ["sample", "sample:", ":2", "sample:0", "sample:x"])
def test_malformed_setting_is_an_error_naming_the_variable(monkeypatch, spec):
    monkeypatch.setenv(KILL_AT_ENV, spec)
    with pytest.raises(ValueError, match=KILL_AT_ENV):
        kill_target("sample")


def test_the_process_dies_of_sigkill_at_the_target_and_not_before():
    code = (
        "from anchor_service.faults import kill_point\n"
        "kill_point('sample', 1)\n"
        "print('after 1', flush=True)\n"
        "kill_point('sample', 2)\n"
        "print('after 2', flush=True)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**_env(), KILL_AT_ENV: "sample:2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout == "after 1\n"


def test_training_gets_no_callback_unless_the_step_is_named(monkeypatch):
    from anchor_service.training.faults import KillDriverAfterCheckpoints, kill_callbacks

    monkeypatch.delenv(KILL_AT_ENV, raising=False)
    assert kill_callbacks("sft") == []
    monkeypatch.setenv(KILL_AT_ENV, "dpo-rank:2")
    assert kill_callbacks("dpo-anchor") == []
    (callback,) = kill_callbacks("dpo-rank")
    assert isinstance(callback, KillDriverAfterCheckpoints) and callback.checkpoints == 2


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != KILL_AT_ENV}
