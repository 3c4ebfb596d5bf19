"""GPU check: the CUDA tests, stage-1 AMP throughput, the frozen-encoder wrappers and a short pipeline, in one table.

    python bench/gpu_check.py                              # on a CUDA machine, from the repository root (~3-4 min)
    python bench/gpu_check.py --quick --out /tmp/gpu.md    # a smoke run with tiny sizes (tens of seconds on a CPU)

Writes the table as markdown to ``--out`` (default ``docs/gpu.md`` on a CUDA machine, ``runs/gpu_check/gpu.md``
without one) and everything measured, with tracebacks of failures, as JSON beside it (``.json``); both are
rewritten after every check, so a run killed part-way still leaves the rows it finished. Each check runs in its own try/except: a failure is a row, not a crash. The
exit status is 1 when a row failed, else 0. Without a CUDA device every check still runs, on the CPU with the
tiny ``--quick`` sizes, and the table says so.

Rows (``seconds`` is the wall time of the check itself):

- **CUDA device** — the GPU torch sees (name, compute capability, memory), or "none found".
- **tests/test_cuda.py** — ``python -m pytest -q tests/test_cuda.py`` in a subprocess: stage-1 AMP training per
  model family with a checkpoint that loads on the CPU with equal weights, resume on CUDA, the frozen-encoder
  wrappers on CUDA against CPU latents, ``resolve_device("auto")``/``autocast_dtype``. Counts passed/failed/skipped
  (all skip without CUDA).
- **stage-1 throughput** — ``bench/train_throughput.py``'s loops on the device: darla's trainer with its defaults
  (fp16 autocast + gradient scaling on CUDA) against an independent hand-written fp32 loop of the same conv64
  β-VAE, interleaved, best of the repeats; images/s and darla/plain. darla with ``amp=false`` is in the details.
- **frozen encoder** — ms per call of ``FrozenEncoder`` (uint8 frames in, latents out, as the wrappers call it)
  on batches of 8 and 64 frames, on CUDA and on the CPU (``bench/wrapper_overhead.encoder_ms`` gives the bare
  encoder forward, in the details).
- **wrapper overhead** — ``bench/wrapper_overhead.py`` on the device: env steps/s of 8 envs raw against the same
  envs through ``VecDisentangledObservation``; the target is ≤ 30% slower.
- **short pipeline** — ``python -m darla.pipeline`` on ``configs/quickstart.yaml`` cut to a few hundred steps
  (one seed), in a temporary directory, on the default device: whether it finished, and its wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vision.runtime import atomic_write_json, atomic_write_text, autocast_dtype, git_sha, resolve_device, versions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench scripts, whatever the working directory

NO_CUDA = "no CUDA (ran on cpu)"
Result = tuple[str, str, dict[str, Any]]  # (result text, status, details for the JSON)


@dataclass(frozen=True)
class Sizes:
    """How much work each check does."""

    images: int  # dSprites frames in the stage-1 training set
    steps: int  # training steps per throughput loop
    batch: int
    repeats: int  # interleaved rounds of plain / darla / darla fp32
    encoder_repeats: int  # calls per frozen-encoder timing
    wrapper_env: str
    wrapper_seconds: float  # per round and loop
    wrapper_rounds: int
    pipeline: tuple[str, ...]  # overrides on configs/quickstart.yaml (pipeline.dir is added)


# The CUDA run: 1000 steps of batch 256 take a few seconds on an H100-class GPU, long enough that the trainer's
# fixed costs (tensorboard, final pictures, latent statistics, checkpoint) do not decide the ratio.
FULL = Sizes(
    images=20_000, steps=1000, batch=256, repeats=2, encoder_repeats=200,
    wrapper_env="darla/Pickup-v0", wrapper_seconds=3.0, wrapper_rounds=2,
    pipeline=(
        "pipeline.seeds=[0]", "stage1.data.num_images=4000", "stage1.train.steps=300", "stage1.train.log_every=50",
        "stage1.train.image_every=300", "stage1.train.ckpt_every=300", "stage1.eval.num_points=500",
        "stage2.train.total_timesteps=2048", "stage2.train.eval_every=2048", "stage2.train.ckpt_every=2048",
        "stage2.train.eval_episodes=2", "transfer.episodes=5", "transfer.reps=200",
    ),
)
# A smoke run: every code path once, at sizes a busy CPU gets through in seconds each.
QUICK = Sizes(
    images=512, steps=5, batch=16, repeats=1, encoder_repeats=10,
    wrapper_env="darla/Sprites-v0", wrapper_seconds=0.2, wrapper_rounds=1,
    pipeline=(
        "pipeline.seeds=[0]", "stage1.data.num_images=256", "stage1.train.steps=3", "stage1.train.batch_size=8",
        "stage1.eval.metrics=[]", "stage2.env.n_envs=2",
        "stage2.agent.hparams={n_steps: 16, batch_size: 16, n_epochs: 1}", "stage2.train.total_timesteps=64",
        "stage2.train.eval_every=64", "stage2.train.ckpt_every=64", "stage2.train.eval_episodes=1",
        "stage2.train.eval_envs=1", "transfer.episodes=1", "transfer.reps=100",
    ),
)


@dataclass
class Row:
    """One line of the table, with the details that go to the JSON only."""

    check: str
    result: str
    seconds: float
    status: str  # ok | FAIL | skipped | no CUDA (ran on cpu) | a named shortfall (slow, misses target)
    details: dict[str, Any] = field(default_factory=dict)


class Report:
    """The rows so far, rewritten to ``out`` (markdown) and ``out`` with ``.json`` after every row."""

    def __init__(self, out: Path, env: dict[str, Any]) -> None:
        self.out, self.env = out, env
        self.json_path = out.with_suffix(".json")
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)
        try:
            atomic_write_text(self.out, self.markdown())
            atomic_write_json(self.json_path, {"environment": self.env, "rows": [asdict(r) for r in self.rows]})
        except OSError as e:  # an unwritable --out must not stop the checks; the table still goes to stdout
            print(f"[gpu_check] could not write {self.out}: {_one_line(e)}", file=sys.stderr)

    def markdown(self) -> str:
        e = self.env
        lines = [
            "# GPU check", "",
            f"`{e['command']}` on {e['date']}: {e.get('device_name', 'no CUDA device')}, torch {e['torch']} "
            f"(CUDA {e['cuda_runtime']}, cuDNN {e['cudnn']}), {e['cpu_count']} CPU cores, Python {e['python']}, "
            f"git {e['git_sha']}. Sizes: {e['sizes']}. Details and tracebacks: `{self.json_path.name}`.", "",
            "| check | result | seconds | status |", "|---|---|---|---|",
        ]
        lines += [f"| {_cell(r.check)} | {_cell(r.result)} | {r.seconds:.1f} | {_cell(r.status)} |" for r in self.rows]
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell (one line, no column breaks)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _one_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one short line: ``Type: message``."""
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}"[:limit]


class Budget:
    """Wall-clock allowance for the whole run: later checks shrink their timeouts or are skipped when it runs out."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def environment(cuda: bool, sizes_name: str) -> dict[str, Any]:
    """Versions, device and provenance recorded in the table's header and the JSON."""
    env: dict[str, Any] = {
        "command": " ".join(["python", *[str(a) for a in sys.argv]]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git_sha": git_sha(ROOT), "torch": torch.__version__, "cuda_runtime": torch.version.cuda or "none",
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else "none",
        "python": platform.python_version(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda, "sizes": sizes_name, "versions": versions(),
    }
    if cuda:
        props = torch.cuda.get_device_properties(0)
        env.update(device_name=props.name, device_count=torch.cuda.device_count(),
                   capability=f"sm_{props.major}{props.minor}", memory_gib=round(props.total_memory / 2**30, 1))
        try:  # the driver version is not in torch; nvidia-smi has it when present
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            env["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else "unknown"
        except (OSError, subprocess.SubprocessError):
            env["driver"] = "unknown"
    return env


# ----- checks -----------------------------------------------------------------------------------------------
def check_device(env: dict[str, Any]) -> Result:
    """The GPU torch sees, or a plain statement that there is none."""
    if not env["cuda_available"]:
        return (f"none found: torch.cuda.is_available() is False (torch {env['torch']}, built for CUDA "
                f"{env['cuda_runtime']}); the checks below ran on the CPU with tiny sizes", "no CUDA", {})
    return (f"{env['device_name']} ({env['capability']}, {env['memory_gib']} GiB, driver {env['driver']}), "
            f"{env['device_count']} visible", "ok", {})


def _pytest_counts(output: str) -> dict[str, int]:
    """Outcome counts from pytest's final summary line (``3 passed, 1 skipped in 2.1s``)."""
    summary = next((ln for ln in reversed(output.splitlines()) if re.search(r"\d+ \w+.* in [\d.]+s", ln)), "")
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors")}
    for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)", summary):
        counts["errors" if kind.startswith("error") else kind] = int(n)
    return counts


def check_tests(cuda: bool, budget: Budget) -> Result:
    """``tests/test_cuda.py`` in a subprocess (a CUDA fault there cannot poison this process's context)."""
    timeout = min(300.0, budget.left() - 10)
    if timeout < 30:
        return "time budget spent", "skipped", {}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    counts = _pytest_counts(out)
    failures = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    text = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or f"no summary (exit {proc.returncode})"
    if failures:
        text += "; " + "; ".join(f[:160] for f in failures[:4]) + (" …" if len(failures) > 4 else "")
    if cuda:
        status = "ok" if proc.returncode == 0 and counts["passed"] and not counts["skipped"] else "FAIL"
    else:
        status = "no CUDA (all skipped)" if proc.returncode == 0 and not counts["passed"] else "FAIL"
    return text, status, {"returncode": proc.returncode, "counts": counts, "failures": failures,
                          "output_tail": out[-4000:]}


def check_throughput(device: torch.device, sizes: Sizes, budget: Budget) -> Result:
    """darla's trainer (AMP) against a plain fp32 loop of the same conv64 β-VAE, via bench/train_throughput.py."""
    if budget.left() < 60:
        return "time budget spent", "skipped", {}
    import train_throughput as tt

    arch, hidden, dev = "conv64", 256, str(device)
    store = tt.dsprites_store(sizes.images)
    if device.type == "cuda":  # CUDA context, cuDNN heuristics and the allocator warm up outside the timings
        tt.plain_loop(store.frames, 20, sizes.batch, arch, hidden, dev)
    runs: dict[str, list[float]] = {"plain fp32": [], "darla amp": [], "darla fp32": []}
    for _ in range(sizes.repeats):  # interleaved, so drifting clocks or neighbours hit every loop alike
        runs["plain fp32"].append(tt.plain_loop(store.frames, sizes.steps, sizes.batch, arch, hidden, dev))
        runs["darla amp"].append(tt.darla_loop(store, sizes.steps, sizes.batch, arch, hidden, amp=True, device=dev))
        runs["darla fp32"].append(tt.darla_loop(store, sizes.steps, sizes.batch, arch, hidden, amp=False, device=dev))
    best = {k: max(v) for k, v in runs.items()}
    ratio = best["darla amp"] / best["plain fp32"]
    dtype = autocast_dtype(device)
    amp_name = str(dtype).replace("torch.", "") if dtype is not None else "off: no fast low precision here"
    text = (f"{device.type}, {arch}, batch {sizes.batch} × {sizes.steps} steps: darla AMP ({amp_name}) "
            f"{best['darla amp']:,.0f} img/s vs plain fp32 {best['plain fp32']:,.0f} img/s = ×{ratio:.2f} "
            f"(darla fp32 ×{best['darla fp32'] / best['plain fp32']:.2f})")
    status = NO_CUDA if device.type != "cuda" else ("ok" if ratio >= 1.0 else "slow: AMP below plain fp32")
    return text, status, {"images_per_s": {k: [round(x) for x in v] for k, v in runs.items()},
                          "ratio_amp_over_plain": round(ratio, 3), "autocast_dtype": str(dtype), "arch": arch,
                          "hidden": hidden, "batch": sizes.batch, "steps": sizes.steps, "images": sizes.images}


def check_encoder(cuda: bool, sizes: Sizes, budget: Budget) -> Result:
    """Frozen conv64 encoder per batch of 8 and 64 frames on CUDA and CPU (the wrappers' per-step cost)."""
    if budget.left() < 30:
        return "time budget spent", "skipped", {}
    from vision.models import ModelConfig, build_model
    from vision.wrappers import FrozenEncoder
    from wrapper_overhead import call_ms, encoder_ms

    details: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    parts = []
    for dev in (["cuda"] if cuda else []) + ["cpu"]:
        torch.manual_seed(0)
        model = build_model(ModelConfig(family="beta_vae", latent_dim=10), (3, 64, 64))  # weights do not matter
        encoder = FrozenEncoder(model, device=dev)
        calls, bare = {}, {}
        for n in (8, 64):
            frames = np.random.default_rng(0).integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)
            calls[n] = call_ms(encoder, frames, sizes.encoder_repeats)
            bare[n] = encoder_ms(encoder, n, sizes.encoder_repeats)
        details[dev] = {"wrapper_call_ms": {n: round(v, 3) for n, v in calls.items()},
                        "bare_encoder_ms": {n: round(v, 3) for n, v in bare.items()}}
        threads = torch.get_num_threads()
        label = dev if dev == "cuda" else f"cpu ({threads} thread{'s' if threads != 1 else ''})"
        parts.append(f"{label} {calls[8]:.2f} / {calls[64]:.2f} ms (bare encoder {bare[8]:.2f} / {bare[64]:.2f})")
    text = "ms per batch of 8 / 64 frames: " + "; ".join(parts)
    return text, ("ok" if cuda else NO_CUDA), details


def check_wrapper_overhead(device: torch.device, sizes: Sizes, budget: Budget) -> Result:
    """Raw vs ``VecDisentangledObservation`` env steps/s on the device, via bench/wrapper_overhead.py."""
    if budget.left() < 45:
        return "time budget spent", "skipped", {}
    import wrapper_overhead as wo

    res = wo.main(["--env-id", sizes.wrapper_env, "--envs", "8", "--seconds", str(sizes.wrapper_seconds),
                   "--rounds", str(sizes.wrapper_rounds), "--device", str(device)])
    text = (f"8 × {res['env_id']} on {res['device']}: raw {res['raw_steps_per_s']:,.0f} env steps/s, wrapped "
            f"{res['wrapped_steps_per_s']:,.0f} ({100 * res['slowdown']:.0f}% slower; target ≤ "
            f"{100 * res['target_slowdown']:.0f}%)")
    if device.type != "cuda":
        status = NO_CUDA
    else:
        status = "ok" if res["slowdown"] <= res["target_slowdown"] else "misses target"
    return text, status, res


def check_pipeline(cuda: bool, sizes: Sizes, budget: Budget) -> Result:
    """``python -m darla.pipeline`` on the quickstart, cut short, in a temporary directory; did it finish?"""
    timeout = min(300.0, budget.left() - 10)
    if timeout < 30:
        return "time budget spent", "skipped", {}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        study = Path(tmp) / "study"
        cmd = [sys.executable, "-m", "darla.pipeline", "--config", str(ROOT / "configs" / "quickstart.yaml"),
               "--no-progress", f"pipeline.dir={study}", *sizes.pipeline]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return f"did not finish within {timeout:.0f} s", "FAIL", {"output_tail": out[-4000:]}
        wall = time.perf_counter() - t0
        out = proc.stdout + proc.stderr
        details: dict[str, Any] = {"returncode": proc.returncode, "overrides": list(sizes.pipeline),
                                   "wall_seconds": round(wall, 1), "output_tail": out[-4000:]}
        if proc.returncode != 0:
            last = next((ln for ln in reversed(out.splitlines()) if ln.strip()), "no output")
            return f"exit {proc.returncode} after {wall:.0f} s: {last[:250]}", "FAIL", details
        jobs = json.loads((study / "pipeline.json").read_text())["jobs"]
        details["jobs_seconds"] = jobs
        s1 = sum(v for k, v in jobs.items() if k.startswith("stage1/"))
        s2 = sum(v for k, v in jobs.items() if k.startswith("stage2/"))
        n1 = sum(k.startswith("stage1/") for k in jobs)
        n2 = sum(k.startswith("stage2/") for k in jobs)
        text = (f"finished in {wall:.0f} s on {'cuda' if cuda else 'cpu'}: {n1} vision modules ({s1:.0f} s), "
                f"{n2} agents ({s2:.0f} s), transfer table written")
    return text, ("ok" if cuda else NO_CUDA), details


# ----- driver -----------------------------------------------------------------------------------------------
def run_check(report: Report, name: str, fn: Callable[[], Result]) -> Row:
    """Time ``fn``; any exception becomes a FAIL row with its traceback in the JSON. The row is written at once."""
    print(f"[gpu_check] {name} …", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        result, status, details = fn()
    except Exception as e:  # one broken check must not cost the others their rows
        result, status, details = _one_line(e), "FAIL", {"traceback": traceback.format_exc()}
    row = Row(name, result, round(time.perf_counter() - t0, 1), status, details)
    report.add(row)
    print(f"[gpu_check] {name}: {status} ({row.seconds:.1f} s)", file=sys.stderr, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="", help="markdown table (JSON goes beside it, .json); default docs/gpu.md on a "
                                             "CUDA machine, runs/gpu_check/gpu.md without one (a CPU smoke run "
                                             "does not overwrite the GPU record)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every check")
    p.add_argument("--budget", type=float, default=480.0,
                   help="seconds for the whole run; later checks shrink or skip to stay within it")
    a = p.parse_args(argv)
    budget = Budget(a.budget)
    cuda = torch.cuda.is_available()
    sizes = FULL if cuda and not a.quick else QUICK
    sizes_name = "full" if sizes is FULL else ("quick" if a.quick else "quick (no CUDA device)")
    try:
        device = resolve_device("auto")
        env = environment(cuda, sizes_name)
    except Exception as e:  # still leave a table that says what went wrong
        device, env = torch.device("cpu"), {"command": " ".join(sys.argv), "date": "", "git_sha": "unknown",
                                           "torch": torch.__version__, "cuda_runtime": "?", "cudnn": "?",
                                           "python": platform.python_version(), "cpu_count": os.cpu_count(),
                                           "cuda_available": cuda, "sizes": sizes_name, "error": _one_line(e)}
    report = Report(Path(a.out or ("docs/gpu.md" if cuda else "runs/gpu_check/gpu.md")), env)
    run_check(report, "CUDA device", lambda: check_device(env))
    run_check(report, "tests/test_cuda.py", lambda: check_tests(cuda, budget))
    run_check(report, "stage-1 throughput (AMP vs plain fp32)", lambda: check_throughput(device, sizes, budget))
    run_check(report, "frozen encoder", lambda: check_encoder(cuda, sizes, budget))
    run_check(report, "wrapper overhead", lambda: check_wrapper_overhead(device, sizes, budget))
    run_check(report, "short pipeline", lambda: check_pipeline(cuda, sizes, budget))
    print(report.markdown())
    print(f"written: {report.out} and {report.json_path}")
    return 1 if any(r.status == "FAIL" for r in report.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
