"""SCAN (Higgins et al. 2018): symbols grounded in a frozen, disentangled vision module.

A *concept* names values for a subset of *symbol groups* (``shape=heart``, ``x=left``, ``shape=heart x=left``);
the groups it leaves out are unspecified, and the images paired with it vary freely there. Concepts enter the
model as k-hot vectors over the vocabulary of every group's symbols (:class:`SymbolSpace`).

:class:`SymbolVAE` is a VAE over k-hot vectors whose latent space is the vision module's: its encoder gives a
diagonal Gaussian q(z_y|y) of the vision's latent dimension, its decoder a Bernoulli p(y|z_y) per symbol. It is
trained on (symbol, image) pairs through the image's frozen visual posterior q(z_x|x)::

    loss = −E_q(z_y|y)[log p(y|z_y)] + β·KL(q(z_y|y) ‖ N(0, I)) + λ·KL(q(z_x|x) ‖ q(z_y|y))

The last term runs *from the visual posterior to the symbol posterior*: averaged over the images of a concept, it
is smallest when q(z_y|y) covers all of their posteriors, so a concept stays broad on the latents of the factors
it does not specify (the reverse KL would shrink it onto one image's value). Then:

* image → symbols: the symbol decoder on the visual posterior mean (:func:`img2sym`);
* symbols → images: samples of q(z_y|y) through the vision decoder (:func:`sym2img`);
* :class:`Recombination`: AND, IN COMMON and IGNORE as a small network applied to two symbol posteriors, latent by
  latent with shared weights (the paper's 1×1 convolution), trained towards the posterior of the result's symbol.

Everything trains on a cache of visual posteriors (:func:`train_scan`), encoded once: the vision stays frozen.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vision.images import to_tensor, to_uint8_hwc
from vision.losses import gaussian_kl, gaussian_kl_between
from vision.models.base import VAEBase, adam
from vision.nets import make_encoder
from vision.runtime import atomic_torch_save, progress_bar, set_num_threads

UNSPECIFIED = -1  # a concept's value for a group it leaves out
OPERATORS = ("AND", "IN_COMMON", "IGNORE")


# ----- symbols and concepts -------------------------------------------------------------------------------
@dataclass
class SymbolGroup:
    """One group of mutually exclusive symbols read from one ground-truth factor.

    ``values`` are the factor indices the group covers (empty: all of them); they are split, in order, into
    ``bins`` contiguous bins of near-equal size (0: one symbol per value). ``labels`` name the symbols.
    """

    name: str = ""
    factor: str = ""
    bins: int = 0
    values: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


class SymbolSpace:
    """The k-hot vocabulary of a list of :class:`SymbolGroup` over a ground truth's factors.

    Group values of an image are (N, G) integer arrays; a concept is a (G,) or (N, G) array with
    :data:`UNSPECIFIED` for the groups it leaves out; its k-hot vector has one 1 per specified group.
    """

    def __init__(self, groups: Sequence[SymbolGroup], factor_names: Sequence[str], factor_sizes: Sequence[int],
                 where: str = "symbols.groups") -> None:
        if not groups:
            raise ValueError(f"{where}: at least one symbol group is needed")
        self.groups = list(groups)
        self.factor_names = tuple(factor_names)
        names = [g.name for g in self.groups]
        self.factor_index: list[int] = []
        self.lookup: list[np.ndarray] = []  # per group: factor index -> group value (UNSPECIFIED: not covered)
        self.labels: list[list[str]] = []
        for i, g in enumerate(self.groups):
            key = f"{where}[{i}]"
            if not g.name:
                raise ValueError(f"{key}.name: required")
            if names.count(g.name) > 1:
                raise ValueError(f"{key}.name: {g.name!r} names two groups")
            if g.factor not in self.factor_names:
                raise ValueError(f"{key}.factor: unknown factor {g.factor!r}; factors are {', '.join(self.factor_names)}")
            k = self.factor_names.index(g.factor)
            size = int(factor_sizes[k])
            values = list(g.values) if g.values else list(range(size))
            bad = [v for v in values if not 0 <= v < size]
            if bad:
                raise ValueError(f"{key}.values: {bad[0]} is outside factor {g.factor!r}'s [0, {size})")
            if len(set(values)) != len(values):
                raise ValueError(f"{key}.values: lists a value twice")
            n = len(values) if g.bins == 0 else g.bins
            if not 2 <= n <= len(values):
                raise ValueError(f"{key}.bins: need 2 <= bins <= {len(values)} values of {g.factor!r}, got {g.bins}")
            lookup = np.full(size, UNSPECIFIED, dtype=np.int64)
            for b, chunk in enumerate(np.array_split(np.asarray(values), n)):
                lookup[chunk] = b
            labels = list(g.labels) if g.labels else [str(b) for b in range(n)]
            if len(labels) != n:
                raise ValueError(f"{key}.labels: {len(labels)} labels for {n} symbols")
            self.factor_index.append(k)
            self.lookup.append(lookup)
            self.labels.append(labels)
        self.sizes = tuple(len(lab) for lab in self.labels)
        self.offsets = tuple(int(o) for o in np.cumsum((0,) + self.sizes[:-1]))
        self.dim = int(sum(self.sizes))
        self.names = [f"{g.name}={lab}" for g, labs in zip(self.groups, self.labels) for lab in labs]

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    def values_of(self, factors: np.ndarray) -> np.ndarray:
        """Group values (N, G) of factor index rows (N, K); :data:`UNSPECIFIED` where a group does not cover it."""
        f = np.asarray(factors)
        return np.stack([lk[f[:, k]] for lk, k in zip(self.lookup, self.factor_index)], axis=1)

    def khot(self, concepts: np.ndarray) -> np.ndarray:
        """k-hot float32 vectors (N, dim) of concepts (N, G) (or one concept (G,) -> (dim,))."""
        c = np.asarray(concepts, dtype=np.int64)
        single = c.ndim == 1
        c = np.atleast_2d(c)
        out = np.zeros((len(c), self.dim), dtype=np.float32)
        for g, (off, size) in enumerate(zip(self.offsets, self.sizes)):
            v = c[:, g]
            if ((v < UNSPECIFIED) | (v >= size)).any():
                raise ValueError(f"concept: group {self.groups[g].name!r} value outside [-1, {size})")
            rows = np.flatnonzero(v >= 0)
            out[rows, off + v[rows]] = 1.0
        return out[0] if single else out

    def concepts_of(self, khot: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """The concepts (N, G) of k-hot vectors (N, dim): per group the symbol above ``threshold`` (at most one)."""
        y = np.atleast_2d(np.asarray(khot))
        out = np.full((len(y), self.num_groups), UNSPECIFIED, dtype=np.int64)
        for g, (off, size) in enumerate(zip(self.offsets, self.sizes)):
            block = y[:, off:off + size] > threshold
            if (block.sum(1) > 1).any():
                raise ValueError(f"khot: group {self.groups[g].name!r} has more than one symbol on")
            on = block.any(1)
            out[on, g] = block[on].argmax(1)
        return out

    def all_concepts(self) -> np.ndarray:
        """Every concept that specifies at least one group, (M, G), ordered by how many groups it specifies."""
        grid = np.array(list(itertools.product(*[range(UNSPECIFIED, s) for s in self.sizes])), dtype=np.int64)
        grid = grid[(grid >= 0).any(1)]
        return grid[np.argsort((grid >= 0).sum(1), kind="stable")]

    def name(self, concept: np.ndarray) -> str:
        """``shape=heart x=left``: the concept's symbols, space-separated."""
        return " ".join(f"{self.groups[g].name}={self.labels[g][v]}" for g, v in enumerate(np.asarray(concept)) if v >= 0)

    def satisfies(self, values: np.ndarray, concept: np.ndarray) -> np.ndarray:
        """Boolean (N,): group values (N, G) agree with ``concept`` (G,) on every group it specifies."""
        c = np.asarray(concept)
        spec = c >= 0
        return np.all(np.asarray(values)[:, spec] == c[spec], axis=1)

    def sample_factors(self, concept: np.ndarray, n: int, rng: np.random.Generator,
                       sample: Callable[[int, np.random.Generator], np.ndarray]) -> np.ndarray:
        """``n`` factor rows (n, K) of images of ``concept``: ``sample`` (the ground truth's own draw) for everything
        the concept leaves free, then each specified group's factor uniform over the values of its symbol."""
        f = np.array(sample(n, rng), dtype=np.int64)
        for g, v in enumerate(np.asarray(concept)):
            if v >= 0:
                allowed = np.flatnonzero(self.lookup[g] == v)
                f[:, self.factor_index[g]] = allowed[rng.integers(0, len(allowed), size=n)]
        return f


def split_concepts(concepts: np.ndarray, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) concepts: a random ``heldout_fraction`` of the concepts that specify two or more groups is
    held out (never paired with an image, never a recombination target in training); one-group concepts, the
    building blocks, are all kept."""
    if not 0 <= heldout_fraction < 1:
        raise ValueError(f"symbols.heldout_fraction: must be in [0, 1), got {heldout_fraction}")
    multi = np.flatnonzero((concepts >= 0).sum(1) >= 2)
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(multi, size=int(round(heldout_fraction * len(multi))), replace=False))
    keep = np.setdiff1d(np.arange(len(concepts)), held)
    return concepts[keep], concepts[held]


# ----- recombination operators on concepts -------------------------------------------------------------
def combine(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """The concept ``a op b``, or None where the operator is not defined for the pair.

    * ``AND`` — the union of their symbols; undefined when they name different values for one group.
    * ``IN_COMMON`` — the symbols both have; undefined when they share none.
    * ``IGNORE`` — ``a`` without the symbols of ``b``; defined when ``b`` is a strict, non-empty part of ``a``.

    On k-hot vectors these are max(y_a, y_b), y_a·y_b and y_a·(1 − y_b).
    """
    a, b = np.asarray(a), np.asarray(b)
    if op == "AND":
        if np.any((a >= 0) & (b >= 0) & (a != b)):
            return None
        return np.where(a >= 0, a, b)
    if op == "IN_COMMON":
        out = np.where((a == b) & (a >= 0), a, UNSPECIFIED)
        return out if (out >= 0).any() else None
    if op == "IGNORE":
        spec_b = b >= 0
        if not spec_b.any() or np.any(a[spec_b] != b[spec_b]) or spec_b.sum() >= (a >= 0).sum():
            return None
        return np.where(spec_b, UNSPECIFIED, a)
    raise ValueError(f"operator: unknown {op!r}; choose from {OPERATORS}")


def concept_codes(concepts: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """One integer per concept row (..., G): equal codes, equal concepts."""
    mult = np.cumprod((1,) + tuple(int(s) + 1 for s in sizes[:-1]))
    return ((np.asarray(concepts) + 1) * mult).sum(-1)


def _combine_all(op: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`combine` for broadcast concept arrays (..., G): (results, defined mask)."""
    sa, sb = a >= 0, b >= 0
    if op == "AND":
        return np.where(sa, a, b), ~np.any(sa & sb & (a != b), axis=-1)
    if op == "IN_COMMON":
        res = np.where((a == b) & sa, a, UNSPECIFIED)
        return res, np.any(res >= 0, axis=-1)
    if op == "IGNORE":
        ok = np.any(sb, -1) & ~np.any(sb & (a != b), -1) & (sb.sum(-1) < sa.sum(-1))
        return np.where(sb, UNSPECIFIED, a), ok
    raise ValueError(f"operator: unknown {op!r}; choose from {OPERATORS}")


def recombination_triples(inputs: np.ndarray, targets: np.ndarray, sizes: Sequence[int], max_per_op: int,
                          seed: int) -> dict[str, np.ndarray]:
    """Per operator, up to ``max_per_op`` rows (i, j, t) with ``combine(op, inputs[i], inputs[j]) == targets[t]``
    and a result unlike either input (a seeded draw when there are more; in (i, j) order otherwise)."""
    a, b = np.asarray(inputs)[:, None, :], np.asarray(inputs)[None, :, :]
    tcodes = concept_codes(targets, sizes)
    order = np.argsort(tcodes)
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for op in OPERATORS:
        res, ok = _combine_all(op, a, b)
        code = concept_codes(res, sizes)
        ok &= (code != concept_codes(a, sizes)) & (code != concept_codes(b, sizes))
        pos = np.clip(np.searchsorted(tcodes, code, sorter=order), 0, len(order) - 1)
        t = order[pos] if len(order) else np.zeros_like(code)
        ok &= (tcodes[t] == code) if len(order) else np.zeros_like(ok)
        i, j = np.nonzero(ok)
        arr = np.stack([i, j, t[i, j]], axis=1).astype(np.int64).reshape(-1, 3)
        if len(arr) > max_per_op:
            arr = arr[np.sort(rng.choice(len(arr), size=max_per_op, replace=False))]
        out[op] = arr
    return out


# ----- the model ------------------------------------------------------------------------------------------
@dataclass
class ScanModelConfig:
    """SCAN's networks and objective weights (the paper: β = 1, λ = 10)."""

    hidden: int = 128  # units of each hidden layer of the symbol encoder and decoder
    layers: int = 2  # hidden layers of each
    beta: float = 1.0  # KL(q(z_y|y) ‖ N(0, I)) weight
    lam: float = 10.0  # KL(q(z_x|x) ‖ q(z_y|y)) weight
    op_hidden: int = 32  # units of the recombination network's hidden layers (per latent, shared)

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "op_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("beta", "lam"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.{name}: must be >= 0, got {getattr(self, name)}")


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SymbolVAE(nn.Module):
    """q(z_y|y) and p(y|z_y) over ``num_symbols``-dimensional k-hot vectors, in a ``latent_dim`` latent space."""

    def __init__(self, num_symbols: int, latent_dim: int, cfg: ScanModelConfig) -> None:
        super().__init__()
        self.cfg, self.num_symbols, self.latent_dim = cfg, int(num_symbols), int(latent_dim)
        hidden = [cfg.hidden] * cfg.layers
        self.encoder = _mlp([num_symbols, *hidden, 2 * latent_dim])
        self.decoder = _mlp([latent_dim, *hidden, num_symbols])

    def encode(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k-hot y (N, S) -> (μ, log σ²) of q(z_y|y), each (N, D)."""
        mu, logvar = self.encoder(y).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, D) -> symbol logits (N, S) of p(y|z)."""
        return self.decoder(z)

    def loss(self, y: torch.Tensor, mu_x: torch.Tensor, logvar_x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """SCAN's objective on a batch of (k-hot y, visual posterior of an image of y's concept); returns the mean
        loss and its detached terms (``recon``, ``kl_prior``, ``kl_visual`` per sample, ``loss``)."""
        mu_y, logvar_y = self.encode(y)
        z = mu_y + torch.randn_like(mu_y) * (0.5 * logvar_y).exp()
        recon = F.binary_cross_entropy_with_logits(self.decode(z), y, reduction="none").sum(1).mean()
        kl_prior = gaussian_kl(mu_y, logvar_y).sum(1).mean()
        kl_visual = gaussian_kl_between(mu_x, logvar_x, mu_y, logvar_y).sum(1).mean()
        loss = recon + self.cfg.beta * kl_prior + self.cfg.lam * kl_visual
        terms = {"recon": recon, "kl_prior": kl_prior, "kl_visual": kl_visual, "loss": loss}
        return loss, {k: v.detach() for k, v in terms.items()}


class Recombination(nn.Module):
    """r(z | z_a, z_b, op): a new diagonal Gaussian from two posteriors and an operator.

    Each latent d is computed from (μ_a, log σ²_a, μ_b, log σ²_b)[d] and the operator's one-hot by the same small
    network (a 1×1 convolution over latents), so an operator is one rule applied to every latent alike.
    """

    def __init__(self, cfg: ScanModelConfig) -> None:
        super().__init__()
        self.net = _mlp([4 + len(OPERATORS), cfg.op_hidden, cfg.op_hidden, 2])

    def forward(self, mu_a: torch.Tensor, logvar_a: torch.Tensor, mu_b: torch.Tensor, logvar_b: torch.Tensor,
                op: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posteriors (N, D) each and operator indices (N,) -> (μ, log σ²) of the result, each (N, D)."""
        n, d = mu_a.shape
        cond = F.one_hot(op, len(OPERATORS)).float().unsqueeze(1).expand(n, d, len(OPERATORS))
        h = torch.cat([torch.stack([mu_a, logvar_a, mu_b, logvar_b], dim=2), cond], dim=2)
        out = self.net(h)
        return out[..., 0], out[..., 1]


# ----- training on cached visual posteriors ---------------------------------------------------------------
@dataclass
class ScanTrainConfig:
    """Optimisation of SCAN's two phases: the symbol VAE, then (on its frozen encoder) the recombination network.
    Both are small MLPs on cached posteriors and train on the CPU."""

    steps: int = 4000  # symbol-VAE steps
    op_steps: int = 3000  # recombination steps
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    log_every: int = 100
    ckpt_every: int = 1000
    num_threads: int = 0  # torch CPU threads; 0: auto (vision.runtime.auto_num_threads)

    def __post_init__(self) -> None:
        for name in ("steps", "op_steps", "batch_size", "log_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"train.lr: must be > 0, got {self.lr}")
        if self.num_threads < 0:
            raise ValueError(f"train.num_threads: must be >= 0, got {self.num_threads}")


@dataclass
class ScanCache:
    """What SCAN trains on: k-hot symbols, the frozen visual posterior of each pair's image, and the operator
    triples over the training concepts (``triples[op]`` rows (i, j, t) into ``concept_khot``)."""

    khot: torch.Tensor  # (P, S) one row per (concept, image) pair
    mu_x: torch.Tensor  # (P, D)
    logvar_x: torch.Tensor  # (P, D)
    concept_khot: torch.Tensor  # (C, S) the training concepts
    triples: dict[str, np.ndarray]


STATE_NAME = "scan.pt"
FORMAT = "darla.scan/1"


def _save_state(path: Path, payload: dict[str, Any]) -> None:
    atomic_torch_save(path, payload)


def train_scan(symbols: SymbolVAE, ops: Recombination, cache: ScanCache, cfg: ScanTrainConfig, run_dir: str | Path, *,
               progress: bool = True, writer: Any = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the symbol VAE (``cfg.steps``), then the recombination network on its frozen encoder
    (``cfg.op_steps``), resuming from ``run_dir/scan.pt`` when it exists.

    Checkpoints hold both networks, both optimisers, the phase, the step and every random state, so a run killed
    and resumed ends with exactly the parameters of an uninterrupted one. ``writer`` (a tensorboard
    ``SummaryWriter``) gets ``scan/…`` and ``ops/…`` scalars. Returns the last logged terms of each phase and the
    training seconds.
    """
    run_dir = Path(run_dir)
    path = run_dir / STATE_NAME
    for stale in run_dir.glob(f".{STATE_NAME}.*.tmp"):
        stale.unlink(missing_ok=True)
    set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    sampler = torch.Generator().manual_seed(cfg.seed)
    opt_sym, opt_ops = adam(list(symbols.parameters()), cfg.lr), adam(list(ops.parameters()), cfg.lr)
    state = {"phase": "symbols", "step": 0, "seconds": 0.0, "terms": {}}
    if path.exists():
        payload = read_scan_state(path)
        symbols.load_state_dict(payload["symbols"])
        ops.load_state_dict(payload["ops"])
        opt_sym.load_state_dict(payload["opt_symbols"])
        opt_ops.load_state_dict(payload["opt_ops"])
        sampler.set_state(payload["rng"]["sampler"])
        torch.set_rng_state(payload["rng"]["torch"])
        state = payload["state"]
    t0 = time.perf_counter()
    prior = float(state["seconds"])

    def save() -> None:
        state["seconds"] = prior + time.perf_counter() - t0
        _save_state(path, {"format": FORMAT, "symbols": symbols.state_dict(), "ops": ops.state_dict(),
                           "opt_symbols": opt_sym.state_dict(), "opt_ops": opt_ops.state_dict(),
                           "rng": {"sampler": sampler.get_state(), "torch": torch.get_rng_state()},
                           "state": state, "extra": extra or {}})

    n_pairs = len(cache.khot)
    if state["phase"] == "symbols":
        symbols.train()
        bar = progress_bar(total=cfg.steps, initial=state["step"], desc="scan symbols", disable=not progress)
        try:
            for step in range(state["step"], cfg.steps):
                idx = torch.randint(n_pairs, (cfg.batch_size,), generator=sampler)
                loss, terms = symbols.loss(cache.khot[idx], cache.mu_x[idx], cache.logvar_x[idx])
                opt_sym.zero_grad(set_to_none=True)
                loss.backward()
                opt_sym.step()
                done = step + 1
                if not math.isfinite(float(terms["loss"])):
                    raise RuntimeError(f"scan: the symbol loss is {float(terms['loss'])} at step {step}")
                if done % cfg.log_every == 0 or done == cfg.steps:
                    state["terms"]["symbols"] = {k: float(v) for k, v in terms.items()}
                    if writer is not None:
                        for k, v in state["terms"]["symbols"].items():
                            writer.add_scalar(f"scan/{k}", v, done)
                    bar.set_postfix(loss=f"{float(terms['loss']):.2f}", kl_visual=f"{float(terms['kl_visual']):.2f}")
                state["step"] = done
                if done == cfg.steps:
                    state["phase"], state["step"] = "ops", 0
                if done % cfg.ckpt_every == 0 or state["phase"] == "ops":
                    save()
                bar.update(1)
        finally:
            bar.close()
    # The operators learn on the symbol encoder as it ended: its posteriors of the training concepts are fixed.
    symbols.eval()
    with torch.no_grad():
        mu_c, logvar_c = symbols.encode(cache.concept_khot)
    rows = [(k, r) for k, op in enumerate(OPERATORS) for r in cache.triples[op]]
    if state["phase"] == "ops" and rows:
        table = torch.as_tensor(np.array([[k, *r] for k, r in rows], dtype=np.int64))
        ops.train()
        bar = progress_bar(total=cfg.op_steps, initial=state["step"], desc="scan operators", disable=not progress)
        try:
            for step in range(state["step"], cfg.op_steps):
                b = table[torch.randint(len(table), (cfg.batch_size,), generator=sampler)]
                op, i, j, t = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
                mu_r, logvar_r = ops(mu_c[i], logvar_c[i], mu_c[j], logvar_c[j], op)
                loss = gaussian_kl_between(mu_c[t], logvar_c[t], mu_r, logvar_r).sum(1).mean()
                opt_ops.zero_grad(set_to_none=True)
                loss.backward()
                opt_ops.step()
                done = step + 1
                if done % cfg.log_every == 0 or done == cfg.op_steps:
                    kl = loss.item()
                    state["terms"]["ops"] = {"kl": kl}
                    if writer is not None:
                        writer.add_scalar("ops/kl", kl, done)
                    bar.set_postfix(kl=f"{kl:.3f}")
                state["step"] = done
                if done == cfg.op_steps:
                    state["phase"] = "done"
                if done % cfg.ckpt_every == 0 or state["phase"] == "done":
                    save()
                bar.update(1)
        finally:
            bar.close()
    elif state["phase"] == "ops":  # no operator triples among the training concepts: nothing to learn
        state["phase"] = "done"
        save()
    ops.eval()
    return {"terms": state["terms"], "train_seconds": round(prior + time.perf_counter() - t0, 2)}


def read_scan_state(path: str | Path) -> dict[str, Any]:
    """A SCAN checkpoint payload (a one-line ValueError naming the path when it is not one)."""
    p = Path(path)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a corrupt file
        raise ValueError(f"checkpoint: {p} is corrupt or not a torch file ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"checkpoint: {p} is not a SCAN checkpoint (format {FORMAT!r} expected)")
    return payload


# ----- inference --------------------------------------------------------------------------------------------
@torch.no_grad()
def img2sym(symbols: SymbolVAE, space: SymbolSpace, mu_x: torch.Tensor) -> np.ndarray:
    """Images -> symbols: the symbol decoder on the visual posterior means (N, D); per group the most probable
    symbol, (N, G)."""
    probs = torch.sigmoid(symbols.decode(mu_x)).cpu().numpy()
    return np.stack([probs[:, o:o + s].argmax(1) for o, s in zip(space.offsets, space.sizes)], axis=1)


@torch.no_grad()
def sym2img(vision: VAEBase, mu: torch.Tensor, logvar: torch.Tensor, samples: int,
            generator: torch.Generator) -> np.ndarray:
    """Symbols -> images: ``samples`` draws of each posterior (N, D) rendered by the frozen vision; uint8
    (N·samples, H, W, C), the samples of posterior i consecutive."""
    dev = next(vision.parameters()).device
    mu, logvar = mu.repeat_interleave(samples, 0), logvar.repeat_interleave(samples, 0)
    z = mu + torch.randn(mu.shape, generator=generator) * (0.5 * logvar).exp()
    out = [to_uint8_hwc(vision.render(z[i:i + 256].to(dev))) for i in range(0, len(z), 256)]
    return np.concatenate(out)


def normalised_entropy(values: np.ndarray, size: int) -> float:
    """Entropy of the empirical distribution of integer ``values`` over ``size`` outcomes, divided by log(size):
    1 for a uniform spread, 0 for a single value."""
    p = np.bincount(np.asarray(values), minlength=size)[:size] / max(len(values), 1)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(size))


def concept_scores(space: SymbolSpace, concept: np.ndarray, read: np.ndarray) -> dict[str, Any]:
    """How well images whose group values were read back as ``read`` (S, G) render ``concept``: ``match`` (all
    specified groups right), ``group_acc`` per specified group, and ``diversity`` (mean normalised entropy over the
    unspecified groups; None when the concept specifies every group)."""
    c = np.asarray(concept)
    spec = np.flatnonzero(c >= 0)
    free = np.flatnonzero(c < 0)
    return {
        "match": float(space.satisfies(read, c).mean()),
        "group_acc": {space.groups[g].name: float((read[:, g] == c[g]).mean()) for g in spec},
        "diversity": float(np.mean([normalised_entropy(read[:, g], space.sizes[g]) for g in free])) if len(free) else None,
    }


# ----- reading factors back from images -----------------------------------------------------------------
class GroupClassifier(nn.Module):
    """A pixel classifier of every symbol group's value (the conv64 encoder with one softmax head per group):
    the independent reader of what a generated image shows."""

    def __init__(self, input_shape: Sequence[int], sizes: Sequence[int], hidden: int = 256) -> None:
        super().__init__()
        self.input_shape, self.sizes = tuple(int(s) for s in input_shape), tuple(int(s) for s in sizes)
        self.net = make_encoder("conv64", self.input_shape, int(sum(self.sizes)), hidden)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (N, C, H, W) in [0, 1] -> one logits tensor (N, size_g) per group."""
        return list(self.net(x).split(list(self.sizes), dim=1))

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        """uint8 images (N, H, W, C) -> predicted group values (N, G)."""
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        out = []
        for i in range(0, len(images), batch):
            logits = self(to_tensor(images[i:i + batch], dev))
            out.append(torch.stack([lg.argmax(1) for lg in logits], dim=1).cpu().numpy())
        self.train(was)
        return np.concatenate(out) if out else np.zeros((0, len(self.sizes)), dtype=np.int64)


def blur_some(images: np.ndarray, fraction: float, max_sigma: float, seed: int) -> np.ndarray:
    """A copy of uint8 ``images`` (N, H, W, C) with a seeded ``fraction`` of them Gaussian-blurred, σ uniform in
    [0.5, max_sigma] pixels: what a classifier of decoded images (means of a pixel likelihood, soft-edged) should
    have seen."""
    import cv2

    rng = np.random.default_rng(seed)
    out = images.copy()
    pick = np.flatnonzero(rng.random(len(images)) < fraction)
    for i, sigma in zip(pick, rng.uniform(0.5, max_sigma, size=len(pick))):
        out[i] = cv2.GaussianBlur(images[i], (0, 0), float(sigma)).reshape(images.shape[1:])
    return out


def train_classifier(images: np.ndarray, values: np.ndarray, sizes: Sequence[int], steps: int, batch_size: int = 64,
                     lr: float = 1e-3, seed: int = 0, progress: bool = True, blur_fraction: float = 0.5,
                     max_sigma: float = 1.5) -> GroupClassifier:
    """Fit a :class:`GroupClassifier` to uint8 ``images`` (N, H, W, C) labelled with group ``values`` (N, G)
    (:data:`UNSPECIFIED` entries are ignored), ``blur_fraction`` of them blurred (:func:`blur_some`);
    deterministic for a given seed on CPU."""
    h, w, c = images.shape[1:]
    images = blur_some(images, blur_fraction, max_sigma, seed) if blur_fraction > 0 else images
    torch.manual_seed(seed)
    model = GroupClassifier((c, h, w), sizes)
    opt = adam(list(model.parameters()), lr)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(values, dtype=torch.int64)
    frames = torch.as_tensor(images)
    bar = progress_bar(range(steps), desc="scan classifier", disable=not progress)
    for _ in bar:
        idx = torch.randint(len(frames), (batch_size,), generator=gen)
        logits = model(to_tensor(frames[idx]))
        target = labels[idx]
        loss = sum(F.cross_entropy(lg, target[:, g], ignore_index=UNSPECIFIED)
                   for g, lg in enumerate(logits) if (target[:, g] >= 0).any())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return model
