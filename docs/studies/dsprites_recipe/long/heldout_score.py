"""Score a stage-1 run's checkpoint as ``vision.train.select_restart`` scores a restart candidate.

    python docs/studies/dsprites_recipe/long/heldout_score.py RUN

Prints the held-out loss terms and ``rotation_gain`` on the same 2,048 frames (evenly spread over the run's
training frames) that the restart selection uses, to compare a run with a candidate in a ``restarts.json``.
"""
from __future__ import annotations

import sys

import numpy as np
import torch
from omegaconf import OmegaConf

import vision
from darla.config import DataConfig
from darla.stage1 import build_frames
from vision.checkpoint import read_checkpoint, resolve_checkpoint
from vision.train import RESTART_SCORE_IMAGES, heldout_rotation_gain, heldout_terms


def main(run: str) -> None:
    torch.set_num_threads(1)
    data = DataConfig(**OmegaConf.to_container(OmegaConf.load(f"{run}/config.yaml").data))
    store = build_frames(data, run, False)
    pick = np.linspace(0, len(store) - 1, min(len(store), RESTART_SCORE_IMAGES)).astype(int)
    model = vision.load(run, "cpu")
    step = read_checkpoint(resolve_checkpoint(run))["step"]
    terms = heldout_terms(model, store.frames[pick], step)
    print(f"{run} step {step}: {terms}, rotation_gain {heldout_rotation_gain(model, store.frames[pick]):.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
