"""Held-out terms and rotation gain of a run's checkpoint, exactly as select_restart scores a restart candidate."""
import sys
import numpy as np, torch
import vision
from darla.config import load_config
from darla.stage1 import build_frames
from vision.train import heldout_terms, heldout_rotation_gain, RESTART_SCORE_IMAGES
from vision.checkpoint import read_checkpoint, resolve_checkpoint
torch.set_num_threads(1)
run = sys.argv[1]
cfg = load_config(f"{run}/config.yaml") if False else None
from omegaconf import OmegaConf
from darla.config import DataConfig
d = OmegaConf.to_container(OmegaConf.load(f"{run}/config.yaml").data)
store = build_frames(DataConfig(**d), run, False)
pick = np.linspace(0, len(store) - 1, min(len(store), RESTART_SCORE_IMAGES)).astype(int)
model = vision.load(run, "cpu")
step = read_checkpoint(resolve_checkpoint(run))["step"]
t = heldout_terms(model, store.frames[pick], 1500)
print(run, "step", step, t, "rotation", heldout_rotation_gain(model, store.frames[pick]))
