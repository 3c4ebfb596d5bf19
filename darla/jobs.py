"""The job runner behind ``darla.pipeline`` and ``darla.sweep``: independent jobs side by side, in dependency order.

A :class:`Job` is a name, the Python command line that does its work (``-m darla.stage1 --config …``), the jobs
it waits for, and its own log file. :func:`run_jobs` decides what runs when, in one place, and hands each job to
one of two executors:

- **local** (the default): subprocesses on this machine, as many side by side as the cores allow, each pinned to
  its share of the threads through ``DARLA_NUM_THREADS`` (what a stage's ``num_threads: 0`` resolves to, see
  :func:`vision.runtime.auto_num_threads`), ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``;
- **Ray** (``address`` set: ``auto`` or ``ray://host:10001`` to join a cluster, ``local`` to start one here):
  every job is a Ray task reserving its ``cpus``/``gpus`` that runs the same command line on the node Ray picks
  (run directories and logs must then be on storage every node sees).

A job whose ``done()`` is true is skipped without starting anything (a rerun after a kill only does what is
missing, and a stage resumes an unfinished run itself). When a job fails, the jobs that need it are not started;
the others carry on. A job's numbers do not depend on what runs beside it: each seeds itself, and its thread count
is fixed by the runner's settings, not by the moment it starts. The console gets one plain line per job start and
end; everything a job prints goes to its log.

>>> run_jobs([Job("a", ("-c", "print(1)"), Path("logs/a.log")),
...           Job("b", ("-c", "print(2)"), Path("logs/b.log"), after=("a",))])  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import math
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

INSTALL_HINT = 'running on Ray needs Ray, which is not installed: pip install -e ".[sweep]"  (or pip install "ray[tune]")'
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # read by OpenMP / MKL when a job's torch starts
STATUSES = ("skipped", "done", "failed", "blocked")


class MissingRayError(ImportError):
    """Ray is needed (an ``address`` was given) and not installed."""


class JobError(RuntimeError):
    """Jobs failed or could not start; the message is one line naming the first one and its log."""


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Job:
    """One unit of work: ``python <argv>`` run from the driver's working directory, output to ``log``.

    ``after`` names the jobs that must finish (or have finished earlier) before this one starts. ``done`` and
    ``prepare`` run in the driver: ``done()`` true means finished earlier (skip it); ``prepare()`` runs just
    before the job starts (e.g. writes the config file ``argv`` names). ``cpus``/``gpus`` are what the job
    reserves (the local executor counts ``cpus`` against the cores; Ray reserves both). ``cost`` orders the
    ready jobs, never what they compute.
    """

    name: str
    argv: tuple[str, ...]
    log: Path
    after: tuple[str, ...] = ()
    done: Callable[[], bool] = _never
    prepare: Callable[[], None] | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    # A rough estimate of the job's duration (any unit, the same for every job of a run). It only orders the jobs
    # ready to start: the one heading the longest chain of work still to do goes first.
    cost: float = 1.0
    # The stage config a stage job runs (its ``run.dir`` is where the job writes); None for other jobs.
    config: Any = None

    def command(self) -> str:
        """The job's command line, to rerun it by hand."""
        return shlex.join(["python", *self.argv])


@dataclass
class JobResult:
    """How a job ended: ``skipped`` (finished earlier), ``done``, ``failed`` (with its error line) or ``blocked``
    (a job it needs failed)."""

    name: str
    status: str
    seconds: float = 0.0
    error: str = ""
    log: str = ""
    threads: int = 0


@dataclass(frozen=True)
class Runner:
    """Where and how wide jobs run.

    ``address`` None runs local subprocesses; otherwise Ray (``local``, ``auto``, ``ray://host:10001``).
    ``max_parallel`` caps the jobs side by side (0: as many as the cores allow). ``threads`` pins every job's
    torch threads (0: the cores divided by the jobs side by side locally, the job's ``cpus`` on Ray).
    ``num_cpus``/``num_gpus`` cap what a local run (or a local Ray) uses (None: what this process may use).
    """

    address: str | None = None
    max_parallel: int = 0
    threads: int = 0
    num_cpus: int | None = None
    num_gpus: int | None = None

    def __post_init__(self) -> None:
        for flag, value in (("--jobs", self.max_parallel), ("--threads", self.threads)):
            if value < 0:
                raise ValueError(f"{flag}: must be >= 0, got {value}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError(f"--num-cpus: must be >= 1, got {self.num_cpus}")

    def cores(self) -> int:
        """The cores a local run uses."""
        if self.num_cpus:
            return self.num_cpus
        from vision.runtime import available_cores

        return available_cores()

    def local_layout(self, jobs: Sequence[Job]) -> tuple[int, int]:
        """(jobs side by side, threads per job) for the local executor on ``jobs``."""
        cores = self.cores()
        widest = max((j.cpus for j in jobs), default=1.0)
        slots = max(1, math.floor(cores / max(widest, 1e-9)))
        if self.max_parallel:
            slots = min(slots, self.max_parallel)
        # Not capped by how many jobs are left: a job's thread count must not depend on what finished earlier.
        return slots, self.threads or max(1, cores // slots)


def add_runner_arguments(parser: Any) -> None:
    """The runner's command-line flags, shared by ``darla.pipeline`` and ``darla.sweep``."""
    g = parser.add_argument_group("job runner")
    g.add_argument("--address", default=None,
                   help="run the jobs on Ray: auto or ray://host:10001 (a cluster), local (start Ray here); "
                        "default: local subprocesses, no Ray")
    g.add_argument("--jobs", type=int, default=0, metavar="N",
                   help="most jobs side by side (default: as many as the cores allow)")
    g.add_argument("--threads", type=int, default=0, metavar="N",
                   help="torch threads per job (default: cores / jobs side by side; on Ray, the job's cpus)")
    g.add_argument("--num-cpus", type=int, default=None, metavar="N",
                   help="cores to use locally (default: the cores this process may run on)")
    g.add_argument("--num-gpus", type=int, default=None, metavar="N", help="GPUs of a local Ray (default: all)")


def runner_from_args(args: Any, max_parallel: int = 0) -> Runner:
    """A :class:`Runner` from :func:`add_runner_arguments`' flags (``--jobs`` wins over ``max_parallel``)."""
    return Runner(address=args.address, max_parallel=args.jobs or max_parallel, threads=args.threads,
                  num_cpus=args.num_cpus, num_gpus=args.num_gpus)


# ----- one job, in a subprocess (both executors) ----------------------------------------------------------
def job_env(threads: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a job pinned to ``threads`` CPU threads."""
    from vision.runtime import THREADS_ENV

    env = dict(os.environ if base is None else base)
    env.update({THREADS_ENV: str(threads), **{v: str(threads) for v in THREAD_VARS}})
    return env


def _launch(argv: Sequence[str], log: str | Path, threads: int, cwd: str) -> subprocess.Popen:
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = shlex.join([sys.executable, *argv])
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S%z')} on {socket.gethostname()}, {threads} thread(s): {command}\n")
        f.flush()
        return subprocess.Popen([sys.executable, *argv], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=job_env(threads), cwd=cwd if Path(cwd).is_dir() else None)


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_command(argv: Sequence[str], log: str, threads: int, cwd: str) -> int:
    """Run ``python <argv>`` to completion with its output appended to ``log``; returns its exit status.

    What a Ray task executes (the child is stopped if the task is cancelled)."""
    proc = _launch(argv, log, threads, cwd)
    try:
        return proc.wait()
    finally:
        _stop(proc)


def last_line(log: str | Path, limit: int = 8192) -> str:
    """The last non-empty line of a log (a failed stage's one-line error or its exception), or ''."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return next((ln.strip() for ln in reversed(lines) if ln.strip() and not ln.startswith("# ")), "")


# ----- executors -------------------------------------------------------------------------------------------
class _Local:
    """Subprocesses on this machine: at most ``slots`` at once, each with ``threads`` threads."""

    def __init__(self, slots: int, threads: int) -> None:
        self.slots, self.threads, self.cwd = slots, threads, os.getcwd()
        self.procs: dict[str, subprocess.Popen] = {}

    def describe(self) -> str:
        return f"{self.slots} at a time, {self.threads} thread{'s' if self.threads > 1 else ''} each, locally"

    def threads_for(self, job: Job) -> int:
        return self.threads

    def has_room(self) -> bool:
        return len(self.procs) < self.slots

    def start(self, job: Job) -> None:
        self.procs[job.name] = _launch(job.argv, job.log, self.threads, self.cwd)

    def wait(self) -> list[tuple[str, int, str]]:
        while True:
            ended = [(n, p.returncode, "") for n, p in self.procs.items() if p.poll() is not None]
            if ended:
                for name, _, _ in ended:
                    del self.procs[name]
                return ended
            time.sleep(0.2)

    def close(self) -> None:
        for proc in self.procs.values():
            _stop(proc)
        self.procs.clear()


def import_ray() -> Any:
    """``ray``, or :class:`MissingRayError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MissingRayError(INSTALL_HINT) from None
    return ray


class _Ray:
    """Ray tasks: one per job, reserving its cpus/gpus, at most ``max_parallel`` submitted at once (0: all)."""

    def __init__(self, runner: Runner) -> None:
        self.ray = ray = import_ray()
        self.runner, self.cwd = runner, os.getcwd()
        self.started = False
        if not ray.is_initialized():
            try:
                if runner.address == "local":
                    ray.init(address="local", num_cpus=runner.num_cpus, num_gpus=runner.num_gpus,
                             include_dashboard=False, logging_level=logging.WARNING)
                else:
                    ray.init(address=runner.address, logging_level=logging.WARNING)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise JobError(f"--address {runner.address}: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
            self.started = True
        self.task = ray.remote(max_retries=0)(run_command)
        self.refs: dict[Any, str] = {}

    def describe(self) -> str:
        cpus = self.ray.cluster_resources().get("CPU", 0)
        return f"on Ray ({self.runner.address}, {cpus:g} CPUs)"

    def threads_for(self, job: Job) -> int:
        return self.runner.threads or max(1, int(job.cpus))

    def has_room(self) -> bool:
        return not self.runner.max_parallel or len(self.refs) < self.runner.max_parallel

    def start(self, job: Job) -> None:
        ref = self.task.options(num_cpus=job.cpus, num_gpus=job.gpus).remote(
            list(job.argv), str(Path(job.log).resolve()), self.threads_for(job), self.cwd)
        self.refs[ref] = job.name

    def wait(self) -> list[tuple[str, int, str]]:
        ready, _ = self.ray.wait(list(self.refs), num_returns=1)
        out = []
        for ref in ready:
            name = self.refs.pop(ref)
            try:
                out.append((name, int(self.ray.get(ref)), ""))
            except Exception as e:  # the task itself died (node lost, worker killed)
                out.append((name, -1, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"))
        return out

    def close(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref)
        self.refs.clear()
        if self.started:
            self.ray.shutdown()


# ----- the scheduler ---------------------------------------------------------------------------------------
def check_graph(jobs: Sequence[Job]) -> None:
    """Unique names, known dependencies, no cycles (a :class:`JobError` naming the job otherwise)."""
    names = [j.name for j in jobs]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise JobError(f"job {name!r}: two jobs have this name")
        seen.add(name)
    by_name = {j.name: j for j in jobs}
    for job in jobs:
        for dep in job.after:
            if dep not in by_name:
                raise JobError(f"job {job.name!r}: waits for {dep!r}, which is not a job of this run")
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise JobError(f"job {name!r}: its dependencies form a cycle")
        state[name] = 1
        for dep in by_name[name].after:
            visit(dep)
        state[name] = 2

    for name in names:
        visit(name)


def echo_line(line: str) -> None:
    """The runner's console line: the time, then ``line`` (flushed, so it shows at once in a pipe or file)."""
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def run_jobs(jobs: Sequence[Job], runner: Runner | None = None, *, echo: Callable[[str], None] | None = echo_line,
             label: str = "jobs") -> dict[str, JobResult]:
    """Run ``jobs`` in dependency order, independent ones side by side; returns {name: result} in job order.

    Jobs whose ``done()`` is true are skipped before any executor starts (so a finished run never starts Ray).
    Among the jobs ready to start, the one heading the costliest chain of remaining work (:func:`chain_costs`)
    goes first, then list order. ``echo`` gets one line per start and end (None: silent).
    A Ctrl-C stops the running jobs (their stages resume on the next invocation) and propagates.
    """
    runner = runner or Runner()
    say = echo or (lambda _line: None)
    check_graph(jobs)
    results: dict[str, JobResult] = {}
    pending: list[Job] = []
    for job in jobs:
        if job.done():
            results[job.name] = JobResult(job.name, "skipped", log=str(job.log))
        else:
            pending.append(job)
    total = len(pending)
    say(f"{label}: {len(jobs)} jobs, {len(jobs) - total} finished earlier, {total} to run")
    if pending:
        executor: _Local | _Ray
        if runner.address:
            executor = _Ray(runner)
        else:
            executor = _Local(*runner.local_layout(pending))
        logs = os.path.commonpath([str(Path(j.log).parent.resolve()) for j in pending])
        say(f"{label}: {executor.describe()}; one log per job under {logs}")
        try:
            _schedule(pending, executor, results, say, total)
        finally:
            executor.close()
    return {j.name: results[j.name] for j in jobs}


def chain_costs(jobs: Sequence[Job]) -> dict[str, float]:
    """Each job's cost plus the costliest chain of jobs that wait for it (directly or not): how much work is
    still ahead once it starts. Jobs outside ``jobs`` (finished earlier) count as nothing."""
    names = {j.name for j in jobs}
    waiting: dict[str, list[Job]] = {j.name: [] for j in jobs}
    for job in jobs:
        for dep in job.after:
            if dep in names:
                waiting[dep].append(job)
    memo: dict[str, float] = {}

    def chain(job: Job) -> float:
        if job.name not in memo:
            memo[job.name] = job.cost + max((chain(w) for w in waiting[job.name]), default=0.0)
        return memo[job.name]

    return {j.name: chain(j) for j in jobs}


def _schedule(pending: list[Job], executor: Any, results: dict[str, JobResult], say: Callable[[str], None],
              total: int) -> None:
    started: dict[str, float] = {}
    jobs = {j.name: j for j in pending}
    ahead = chain_costs(pending)
    pending = sorted(pending, key=lambda j: -ahead[j.name])  # stable: list order among equals
    count = 0
    while pending or started:
        for job in list(pending):
            bad = [d for d in job.after if d in results and results[d].status in ("failed", "blocked")]
            if bad:
                pending.remove(job)
                results[job.name] = JobResult(job.name, "blocked", error=f"needs {bad[0]}, which did not finish",
                                              log=str(job.log))
                say(f"blocked {job.name} (needs {bad[0]})")
        for job in [j for j in pending if all(d in results and results[d].status in ("done", "skipped") for d in j.after)]:
            if not executor.has_room():
                break
            pending.remove(job)
            if job.prepare is not None:
                job.prepare()
            executor.start(job)
            count += 1
            started[job.name] = time.perf_counter()
            say(f"start   {job.name} [{count}/{total}]  log: {job.log}")
        if not started:
            if pending:  # unreachable after check_graph; a guard against spinning forever
                raise JobError(f"job {pending[0].name!r}: nothing it waits for can run")
            continue
        for name, code, crash in executor.wait():
            seconds = round(time.perf_counter() - started.pop(name), 1)
            job = jobs[name]
            threads = executor.threads_for(job)
            if code == 0:
                results[name] = JobResult(name, "done", seconds, log=str(job.log), threads=threads)
                say(f"done    {name} in {seconds:.0f} s")
            else:
                error = crash or last_line(job.log) or f"exit status {code}"
                results[name] = JobResult(name, "failed", seconds, error=error, log=str(job.log), threads=threads)
                say(f"FAILED  {name} after {seconds:.0f} s (exit {code}): {error}  log: {job.log}")


def failures(results: Mapping[str, JobResult]) -> Iterator[JobResult]:
    """The results of jobs that failed or were blocked, in job order."""
    return (r for r in results.values() if r.status in ("failed", "blocked"))


def raise_for_failures(results: Mapping[str, JobResult]) -> None:
    """A one-line :class:`JobError` naming the first failed job, its error and its log, if any job failed."""
    bad = list(failures(results))
    if not bad:
        return
    first = next((r for r in bad if r.status == "failed"), bad[0])
    others = f" ({len(bad) - 1} more did not finish)" if len(bad) > 1 else ""
    raise JobError(f"job {first.name} failed: {first.error}{others}; log: {first.log}")
