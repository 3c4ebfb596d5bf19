"""darla's vision core: the β-VAE family, ground-truth data, metrics, the stage-1 trainer and frozen-encoder wrappers.

``vision.load(path)`` returns a trained model, frozen and ready to encode.
"""
from vision.checkpoint import load

__all__ = ["load"]
