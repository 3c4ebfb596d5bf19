"""Run-time plumbing shared by every stage: devices, CPU threads, seeding, provenance and atomic writes."""
from __future__ import annotations

import functools
import io
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

TRACKED_PACKAGES = (
    "darla", "torch", "numpy", "gymnasium", "stable-baselines3", "opencv-python-headless", "omegaconf",
    "scikit-learn", "tensorboard",
)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device (an unavailable CUDA is an error)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available on this machine")
    return dev


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype worth using on ``device``, or None for plain fp32.

    CUDA: float16 (with gradient scaling). CPU: bfloat16 where the CPU computes it natively (AVX512-BF16 / AMX);
    elsewhere bf16 is emulated and slower than fp32, so None.
    """
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return torch.bfloat16
    return None


# ----- CPU threads ---------------------------------------------------------------------------------------
# Set by darla's job runner (darla.jobs) for every job it starts: that job's share of the cores.
THREADS_ENV = "DARLA_NUM_THREADS"


def available_cores() -> int:
    """The CPU cores this process may run on: its affinity mask, capped by a cgroup v2 CPU quota where one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(float(quota) / float(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def busy_cores_elsewhere(samples: int = 7, interval: float = 0.01) -> int:
    """How many of this process's cores other processes keep busy right now (0 where that cannot be told).

    The median over ``samples`` readings of the kernel's count of runnable threads (``/proc/stat``
    ``procs_running``), less this process's own. Only meaningful when this process may use every core of the
    machine (the count is machine-wide); otherwise 0.
    """
    if available_cores() < (os.cpu_count() or 1):
        return 0
    import time

    counts = []
    for i in range(samples):
        try:
            for line in Path("/proc/stat").read_text().splitlines():
                if line.startswith("procs_running"):
                    counts.append(int(line.split()[1]))
                    break
        except (OSError, ValueError):
            return 0
        if i + 1 < samples:
            time.sleep(interval)
    if not counts:
        return 0
    return max(0, sorted(counts)[len(counts) // 2] - 1)  # the reading thread itself is running


def auto_num_threads() -> int:
    """The thread count ``num_threads: 0`` (auto) resolves to.

    Under darla's job runner: the job's share of the cores, from ``DARLA_NUM_THREADS`` (one thread per job when
    jobs run side by side); then an explicit ``OMP_NUM_THREADS``. Otherwise the available cores less those other
    processes keep busy when the process starts, at least 1, so a run started beside another CPU-bound process
    does not oversubscribe the cores (torch's default, one thread per core, then runs several times slower than
    one thread would).
    """
    for var in (THREADS_ENV, "OMP_NUM_THREADS"):
        share = os.environ.get(var, "").strip()
        if share:
            try:
                return max(1, int(share))
            except ValueError:
                raise ValueError(f"{var}: expected a whole number of threads, got {share!r}") from None
    return _threads_alone()


@functools.lru_cache(maxsize=1)
def _threads_alone() -> int:
    # Decided once per process: every run in it (a test session, a study script) uses the same count.
    return max(1, available_cores() - busy_cores_elsewhere())


def set_num_threads(requested: int = 0) -> int:
    """Set torch's CPU thread count: ``requested`` when > 0, else :func:`auto_num_threads`; returns the count."""
    if requested < 0:
        raise ValueError(f"num_threads: must be >= 0, got {requested}")
    n = requested or auto_num_threads()
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    """Python, platform and the versions of the packages a result depends on."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in TRACKED_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    out["cuda"] = torch.version.cuda or "none"
    return out


def git_sha(start: str | Path | None = None) -> str:
    """The git commit of the source tree (with ``-dirty`` when it has uncommitted changes), or ``unknown``."""
    where = Path(start) if start else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomic text write (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Atomic JSON write, indented, with non-JSON values (numpy scalars, paths) stringified sensibly."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    """``torch.save`` through an in-memory buffer and an atomic rename: a kill never leaves half a file."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class _LineStream:
    """What a progress bar writes to when stderr is not a terminal: at most one plain line every ``interval`` s.

    tqdm redraws in place with carriage returns and cursor moves, and redraws on every ``set_postfix``; in a log
    file that is hundreds of KB of control codes. This strips them, writes a refresh as one line when ``interval``
    seconds have passed since the last line, and keeps the newest one otherwise, to write it when the bar closes.
    """

    def __init__(self, stream: Any, interval: float) -> None:
        self.stream, self.interval = stream, interval
        self.last = float("-inf")
        self.pending = ""

    def write(self, s: str) -> None:
        import time

        text = s.replace("\r", "").replace("\x1b[A", "").strip()
        if not text:  # a bare newline or a clearing write: the bar is closing or moving
            if self.pending:
                self.stream.write(self.pending + "\n")
                self.pending = ""
            return
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.stream.write(text + "\n")
            self.last, self.pending = now, ""
        else:
            self.pending = text

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Any = None, *, line_interval: float = 30.0, **kwargs: Any) -> Any:
    """A tqdm bar on a terminal; when stderr is a file or pipe, a plain line every ``line_interval`` s and at the end.

    Takes tqdm's arguments (``total``, ``desc``, ``disable``, ``leave``, ...).
    """
    from tqdm.auto import tqdm

    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        kwargs.setdefault("file", _LineStream(sys.stderr, line_interval))
        kwargs.setdefault("mininterval", line_interval)
        kwargs.setdefault("ncols", 100)
        kwargs.pop("dynamic_ncols", None)
        kwargs.pop("position", None)
    return tqdm(iterable, **kwargs)
