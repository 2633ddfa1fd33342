"""jobs/entry: a relative --out inside Ray's temporary working-dir copy is warned about."""

from __future__ import annotations

from pathlib import Path

from jobs.entry import _in_job_working_dir


def test_the_working_dir_copy_of_a_submitted_job_is_recognised():
    ray_copy = Path(
        "/tmp/ray/session_2026-12-02_07-00-00_000000_1/runtime_resources/"
        "working_dir_files/_ray_pkg_0123456789abcdef"
    )
    assert _in_job_working_dir(ray_copy)
    assert _in_job_working_dir(ray_copy / "sub")
    assert not _in_job_working_dir(Path("/home/me/anchor-service"))
    assert not _in_job_working_dir(Path("/tmp/ray/session_1/logs"))
