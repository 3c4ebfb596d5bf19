"""The job runner (darla.jobs) on tiny Python jobs, and the thread policy (vision.runtime)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import darla.jobs
from darla.jobs import (Job, JobError, MissingRayError, Runner, chain_costs, check_graph, import_ray, raise_for_failures,
                        run_jobs)
from vision import runtime


def _job(tmp: Path, name: str, code: str, after: tuple[str, ...] = (), **kw: object) -> Job:
    return Job(name, ("-c", code), tmp / "logs" / f"{name}.log", after=after, **kw)  # type: ignore[arg-type]


def _write(path: Path, text: str = "'x'") -> str:
    return f"import pathlib; pathlib.Path({str(path)!r}).write_text({text})"


def test_jobs_run_in_dependency_order_with_their_thread_share_and_own_logs(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    jobs = [
        _job(tmp_path, "b", f"import pathlib; assert pathlib.Path({str(a)!r}).exists(); print('b ran'); "
                            + _write(b, "__import__('os').environ['DARLA_NUM_THREADS']"), after=("a",)),
        _job(tmp_path, "a", "import os; print('a ran'); " + _write(a, "os.environ['OMP_NUM_THREADS']")),
    ]
    results = run_jobs(jobs, Runner(num_cpus=2), echo=None)
    assert list(results) == ["b", "a"] and all(r.status == "done" for r in results.values())
    assert a.read_text() == "1" and b.read_text() == "1"  # two cores, two jobs side by side: one thread each
    assert "a ran" in (tmp_path / "logs" / "a.log").read_text()
    assert "b ran" in (tmp_path / "logs" / "b.log").read_text()
    assert results["a"].threads == 1


def test_independent_jobs_run_side_by_side(tmp_path: Path) -> None:
    # Each job waits for the other's marker: both can only finish if both run at once.
    def waits_for(mine: str, other: str) -> str:
        return (f"import pathlib, time; pathlib.Path({str(tmp_path / mine)!r}).touch(); t = time.time()\n"
                f"while not pathlib.Path({str(tmp_path / other)!r}).exists():\n"
                f"    assert time.time() - t < 120, 'the other job never started'; time.sleep(0.05)")
    jobs = [_job(tmp_path, "x", waits_for("x", "y")), _job(tmp_path, "y", waits_for("y", "x"))]
    assert all(r.status == "done" for r in run_jobs(jobs, Runner(num_cpus=2), echo=None).values())


def test_a_failed_job_blocks_its_dependents_only(tmp_path: Path) -> None:
    lines: list[str] = []
    jobs = [_job(tmp_path, "bad", "raise SystemExit('error: train.steps: must be >= 1')"),
            _job(tmp_path, "child", _write(tmp_path / "child"), after=("bad",)),
            _job(tmp_path, "grandchild", _write(tmp_path / "grandchild"), after=("child",)),
            _job(tmp_path, "other", _write(tmp_path / "other"))]
    results = run_jobs(jobs, Runner(num_cpus=2), echo=lines.append)
    assert [r.status for r in results.values()] == ["failed", "blocked", "blocked", "done"]
    assert results["bad"].error == "error: train.steps: must be >= 1"
    assert not (tmp_path / "child").exists() and (tmp_path / "other").exists()
    assert any(ln.startswith("FAILED  bad") for ln in lines) and any(ln.startswith("start   other") for ln in lines)
    with pytest.raises(JobError, match=r"job bad failed: error: train.steps: must be >= 1 \(2 more did not finish\); log: "):
        raise_for_failures(results)


def test_the_job_heading_the_costliest_chain_starts_first(tmp_path: Path) -> None:
    lines: list[str] = []
    jobs = [_job(tmp_path, "short", "pass", cost=1), _job(tmp_path, "long", "pass", cost=10),
            _job(tmp_path, "tail", "pass", after=("long",), cost=5), _job(tmp_path, "medium", "pass", cost=3)]
    assert chain_costs(jobs) == {"short": 1, "long": 15, "tail": 5, "medium": 3}
    run_jobs(jobs, Runner(num_cpus=1), echo=lines.append)
    assert [ln.split()[1] for ln in lines if ln.startswith("start ")] == ["long", "tail", "medium", "short"]


def test_finished_jobs_are_skipped_without_starting_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(darla.jobs, "_Local", lambda *a: pytest.fail("an executor started for finished jobs"))
    jobs = [_job(tmp_path, "a", "raise SystemExit(1)", done=lambda: True),
            _job(tmp_path, "b", "raise SystemExit(1)", after=("a",), done=lambda: True)]
    assert [r.status for r in run_jobs(jobs, echo=None).values()] == ["skipped", "skipped"]


def test_prepare_runs_just_before_the_job(tmp_path: Path) -> None:
    cfg = tmp_path / "jobs" / "a.txt"
    job = _job(tmp_path, "a", f"print(open({str(cfg)!r}).read())", prepare=lambda: (cfg.parent.mkdir(), cfg.write_text("cfg")))
    assert run_jobs([job], echo=None)["a"].status == "done"
    assert "cfg" in (tmp_path / "logs" / "a.log").read_text()


@pytest.mark.parametrize("jobs, match", [
    ([("a", ()), ("a", ())], "job 'a': two jobs have this name"),
    ([("a", ("nope",))], "job 'a': waits for 'nope', which is not a job"),
    ([("a", ("b",)), ("b", ("a",))], "its dependencies form a cycle"),
])
def test_bad_job_graphs_name_the_job(tmp_path: Path, jobs: list, match: str) -> None:
    with pytest.raises(JobError, match=match):
        check_graph([_job(tmp_path, n, "pass", after=after) for n, after in jobs])


def test_local_layout_sizes_threads_to_the_cores() -> None:
    one = [Job("a", (), Path("a"))]
    assert Runner(num_cpus=2).local_layout(one) == (2, 1)  # side by side: one thread each, however many are left
    assert Runner(num_cpus=2, max_parallel=1).local_layout(one) == (1, 2)  # one at a time: all the cores
    assert Runner(num_cpus=8, max_parallel=2).local_layout(one) == (2, 4)
    assert Runner(num_cpus=2).local_layout([Job("a", (), Path("a"), cpus=2)]) == (1, 2)  # resources.cpu: 2
    assert Runner(num_cpus=2, threads=1, max_parallel=1).local_layout(one) == (1, 1)
    with pytest.raises(ValueError, match="--jobs: must be >= 0"):
        Runner(max_parallel=-1)


def test_auto_threads_follow_the_runner_share_then_the_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert 1 <= runtime.available_cores() and runtime.busy_cores_elsewhere(samples=3, interval=0) >= 0
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(runtime.THREADS_ENV, "1")
        assert runtime.auto_num_threads() == 1 and runtime.set_num_threads(0) == 1 == torch.get_num_threads()
        assert runtime.set_num_threads(2) == 2  # an explicit count wins
        monkeypatch.setenv(runtime.THREADS_ENV, "two")
        with pytest.raises(ValueError, match="DARLA_NUM_THREADS: expected a whole number"):
            runtime.auto_num_threads()
        monkeypatch.delenv(runtime.THREADS_ENV)
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert runtime.auto_num_threads() == 3  # a user's explicit OpenMP setting is honoured
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(runtime, "available_cores", lambda: 4)
        monkeypatch.setattr(runtime, "busy_cores_elsewhere", lambda: 0)
        runtime._threads_alone.cache_clear()
        assert runtime.auto_num_threads() == 4  # an idle machine: every core
        monkeypatch.setattr(runtime, "busy_cores_elsewhere", lambda: 3)
        runtime._threads_alone.cache_clear()
        assert runtime.auto_num_threads() == 1  # three of four cores busy elsewhere
        monkeypatch.setattr(runtime, "busy_cores_elsewhere", lambda: 9)
        runtime._threads_alone.cache_clear()
        assert runtime.auto_num_threads() == 1  # never below one
    finally:
        runtime._threads_alone.cache_clear()
        torch.set_num_threads(before)


def test_missing_ray_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingRayError, match=r'pip install -e "\.\[sweep\]"'):
        import_ray()


def test_ray_executor_runs_the_same_jobs(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "b.txt"
    jobs = [_job(tmp_path, "a", "print('on ray')"),
            _job(tmp_path, "b", _write(out, "__import__('os').environ['DARLA_NUM_THREADS']"), after=("a",)),
            _job(tmp_path, "bad", "raise SystemExit('boom')")]
    results = run_jobs(jobs, Runner(address="local", num_cpus=2), echo=None)
    assert [r.status for r in results.values()] == ["done", "done", "failed"]
    assert out.read_text() == "1" and "on ray" in (tmp_path / "logs" / "a.log").read_text()
    assert results["bad"].error == "boom"
