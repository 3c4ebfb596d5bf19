"""Why does PPO learn nothing on the foreground-target modules? Three probes of the codes a policy would read.

    python docs/studies/pickup_study/code_probes.py --out docs/studies/pickup_study/code_probes.json \
        beta_vae_dae beta_vae_dae_fg beta_vae_dae_ent beta_vae_dae_ent_fg dae dae_fg vae

Each NAME is a stage-1 run under ``--root``. 6,000 source frames follow the scripted policy with 20% random actions
(so the states are varied); each module encodes them exactly as stage 2 does (``FrozenEncoder``: standardised
posterior means). Per module:

- ``bc_heldout``: a logistic regression's held-out accuracy at the scripted action (trained on the first 4,000
  frames): does the code hold what the task needs, linearly?
- ``closed_latents``: latents whose training-set sd of the mean is < 0.05; standardising divides by that sd, so
  such a latent reaches the policy as amplified residue;
- ``step_over_spread``: mean squared change of the code between consecutive frames of an episode, over that between
  two random frames; a jittery code (near 1) would make values hard to learn;
- ``obs_rms`` and ``obs_p99``: the size of what the policy receives (the standardised code on these frames, whose
  states the exploratory policy that collected the training frames also visits): values far from 1 would mean the
  policy's input is out of the range its initialisation expects;
- ``class_heldout``: on the frames whose nearest object in view is less than 3 world units away, a
  class-balanced logistic regression's held-out balanced accuracy (chance 0.5) at whether that object is a ball or
  a pyramid. Ball and pyramid differ by shape only, and a foreground mask weights every object alike, so this is
  what a foreground target could blur; a code that cannot tell them apart leaves "walk into the object ahead"
  worth about 0. ``class_balls`` is the share of balls among those frames (the scripted policy seeks balls).
"""
from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401 - registers the envs
from envs import scripted_policy
from vision.metrics.baselines import raw_pixels
from vision.runtime import atomic_write_json
from vision.wrappers import FrozenEncoder


CLASS_RANGE = 3  # the env's view-distance bins 0-2 (under 3 world units): near enough for an object's shape to show


def nearest_class(env: gym.Env, factors: np.ndarray) -> np.ndarray:
    """Per frame, the class of the nearest object in view, from the env's own view factors: 1 ball, 0 pyramid, -1
    none within ``CLASS_RANGE`` bins (or a ball and a pyramid in the same distance bin, which is no answer)."""
    view = env.unwrapped.view_factors(factors)
    ball, pyramid = view["ball_distance"], view["pyramid_distance"]
    return np.where((ball < pyramid) & (ball < CLASS_RANGE), 1, np.where((pyramid < ball) & (pyramid < CLASS_RANGE), 0, -1))


def rollout(env_id: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frames, the scripted action at each, whether the next frame is in the same episode, and the class of the
    nearest object in view (1 ball, 0 pyramid, -1 none within ``CLASS_RANGE``)."""
    env = gym.make(env_id, domain="source")
    policy = scripted_policy(env_id)
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)  # the random actions too, so the frames are the same every run
    frames, actions, cont, factors = [], [], [], []
    obs, info = env.reset(seed=seed)
    while len(frames) < n:
        a = policy(obs, info)
        frames.append(obs)
        factors.append(env.unwrapped.factors.copy())
        actions.append(int(a))
        obs, _, term, trunc, info = env.step(a if rng.random() > 0.2 else env.action_space.sample())
        cont.append(not (term or trunc))
        if term or trunc:
            obs, info = env.reset()
    return np.stack(frames), np.array(actions), np.array(cont[:-1]), nearest_class(env, np.stack(factors))


def probe(z: np.ndarray, actions: np.ndarray, cont: np.ndarray, classes: np.ndarray, n_train: int,
          seed: int = 0) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    z = (z - z[:n_train].mean(0)) / (z[:n_train].std(0) + 1e-6)
    clf = LogisticRegression(max_iter=2000).fit(z[:n_train], actions[:n_train])
    step = ((z[1:] - z[:-1]) ** 2).sum(1)[cont]
    other = ((z - z[np.random.default_rng(seed).permutation(len(z))]) ** 2).sum(1)
    has = classes >= 0
    tr, te = has & (np.arange(len(z)) < n_train), has & (np.arange(len(z)) >= n_train)
    cls = LogisticRegression(max_iter=2000, class_weight="balanced").fit(z[tr], classes[tr])
    return {"bc_heldout": float(clf.score(z[n_train:], actions[n_train:])),
            "step_over_spread": float(step.mean() / other.mean()),
            "class_heldout": float(balanced_accuracy_score(classes[te], cls.predict(z[te]))),
            "class_balls": float(classes[has].mean()), "class_frames": int(has.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="stage-1 run names under --root")
    ap.add_argument("--root", default="runs/pickup_study/stage1")
    ap.add_argument("--env", default="darla/Pickup-v0")
    ap.add_argument("--frames", type=int, default=6000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    frames, actions, cont, classes = rollout(args.env, args.frames)
    n_train = args.frames * 2 // 3
    rows = {}
    for name in args.runs:
        enc = FrozenEncoder(f"{args.root}/{name}")
        z = enc(frames)
        rows[name] = {**probe(z, actions, cont, classes, n_train), "obs_rms": float(np.sqrt((z ** 2).mean())),
                      "obs_p99": float(np.percentile(np.abs(z), 99)),
                      "closed_latents": int((enc.model.latent_std < 0.05).sum()), "latents": len(enc.model.latent_std)}
        print(name, json.dumps(rows[name]), flush=True)
    rows["pixels_pca64"] = probe(_pca(frames, n_train), actions, cont, classes, n_train)
    print("pixels_pca64", json.dumps(rows["pixels_pca64"]), flush=True)
    atomic_write_json(args.out, {"env": args.env, "frames": args.frames, "action_freqs":
                                 (np.bincount(actions) / len(actions)).round(3).tolist(), "rows": rows})


def _pca(frames: np.ndarray, n_train: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    flat = raw_pixels()(frames)[0]
    return PCA(64, random_state=0).fit(flat[:n_train]).transform(flat)


if __name__ == "__main__":
    main()
