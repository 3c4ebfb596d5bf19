"""Stage-1 speed beside another CPU-bound process, under torch's old default thread count and under darla's policy.

    python bench/thread_policy.py [--steps 150] [--competitor busy|stage1] [--out bench_threads.json]

Four short stage-1 runs (``python -m darla.stage1``, a small β-VAE on procedural dSprites, no metrics), each in
its own process and run directory: alone and beside a competitor, first with ``train.num_threads`` set to torch's
default (one thread per physical core, what ``num_threads: 0`` meant before the policy), then with
``num_threads: 0`` (auto, :func:`vision.runtime.auto_num_threads`). The competitor is started first and is one
CPU-bound process: a Python busy loop (``busy``) or a second stage-1 run with the same setting (``stage1``).
Speed is steps / the run's own ``train_seconds`` (imports and data set-up excluded). Prints each speed and the
ratio beside/alone; the issue's target is ≥ 0.40 for the policy.

Run it on an otherwise idle machine: other load is a competitor too. ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``
and ``DARLA_NUM_THREADS`` are removed from the runs' environment (the policy honours them).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV_DROP = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "DARLA_NUM_THREADS")
BUSY = "while True: pass"


def clean_env() -> dict[str, str]:
    """This process's environment without any thread setting, so each run picks its own."""
    return {k: v for k, v in os.environ.items() if k not in ENV_DROP}


def torch_default_threads() -> int:
    """torch's default intra-op thread count in a fresh process with no thread settings."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=clean_env(),
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def stage1_argv(run_dir: Path, steps: int, threads: int) -> list[str]:
    """A short stage-1 run: 5,000 dSprites images, batch 64, 6 latents, one start, no metrics or images."""
    return [sys.executable, "-m", "darla.stage1", "--config", str(ROOT / "configs/dsprites/beta_vae.yaml"),
            "--no-progress", f"run.dir={run_dir}", "data.num_images=5000", f"train.steps={steps}",
            "train.restarts=1", "model.latent_dim=6", "train.batch_size=64", f"train.num_threads={threads}",
            f"train.log_every={steps}", f"train.image_every={steps * 10}", f"train.ckpt_every={steps}",
            "eval.metrics=[]"]


def speed(run_dir: Path, steps: int, threads: int) -> dict[str, Any]:
    """Run one stage-1 job to the end; its steps/s from its own summary."""
    proc = subprocess.run(stage1_argv(run_dir, steps, threads), env=clean_env(), cwd=ROOT, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"stage-1 run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    summary = json.loads((run_dir / "stage1.json").read_text())
    return {"steps_per_second": round(steps / summary["train_seconds"], 2), "train_seconds": summary["train_seconds"]}


def competitor(kind: str, run_dir: Path, steps: int, threads: int) -> subprocess.Popen:
    """Start the CPU-bound process the measured run shares the machine with."""
    if kind == "busy":
        argv = [sys.executable, "-c", BUSY]
    else:  # a long stage-1 run: still training when the measured one ends
        argv = stage1_argv(run_dir, steps * 100, threads)
    proc = subprocess.Popen(argv, env=clean_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3.0 if kind == "busy" else 15.0)  # running (past its imports) before the measured run starts
    return proc


def measure(setting: str, threads: int, kind: str, steps: int, tmp: Path) -> dict[str, Any]:
    alone = speed(tmp / f"{setting}_alone", steps, threads)
    other = competitor(kind, tmp / f"{setting}_competitor", steps, threads)
    try:
        beside = speed(tmp / f"{setting}_beside", steps, threads)
    finally:
        other.terminate()
        other.wait()
    ratio = beside["steps_per_second"] / alone["steps_per_second"]
    return {"num_threads": threads, "alone": alone, "beside": beside, "ratio": round(ratio, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150, help="training steps per measured run")
    p.add_argument("--competitor", choices=("busy", "stage1"), default="busy")
    p.add_argument("--out", default="", help="also write the results as JSON here")
    a = p.parse_args(argv)
    from vision.runtime import available_cores

    default = torch_default_threads()
    print(f"{available_cores()} cores; torch's default: {default} threads; competitor: {a.competitor}; "
          f"{a.steps} steps per run", flush=True)
    results: dict[str, Any] = {"cores": available_cores(), "torch_default_threads": default, "competitor": a.competitor,
                               "steps": a.steps}
    with tempfile.TemporaryDirectory() as tmp:
        for setting, threads in (("old_default", default), ("policy", 0)):
            r = measure(setting, threads, a.competitor, a.steps, Path(tmp))
            results[setting] = r
            print(f"{setting:12s} (train.num_threads={threads}): alone {r['alone']['steps_per_second']:.2f} it/s, "
                  f"beside {r['beside']['steps_per_second']:.2f} it/s, ratio {r['ratio']:.2f}", flush=True)
    policy, old = results["policy"], results["old_default"]
    results["policy_beside_over_old_alone"] = round(
        policy["beside"]["steps_per_second"] / old["alone"]["steps_per_second"], 3)
    print(f"policy beside / old default alone: {results['policy_beside_over_old_alone']:.2f} (target >= 0.40)")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
