"""Stage 2 — learn to act: SB3 agents and Episodic Control on frozen (or fine-tuned) disentangled vision.

``agents.variants`` defines DARLA's variants (BASELINE, DARLA, DARLA_ENT, PIXEL_VAE, DARLA_DAE, DARLA_FT,
DC_IGN, RANDOM_ENC, AUG), ``agents.factory`` builds any algorithm from YAML hyper-parameters,
``agents.episodic_control`` is MFEC.
"""
from agents.config import AgentConfig, AugmentConfig
from agents.episodic_control import EpisodicControl
from agents.factory import ALGORITHMS, load_algorithm, make_algorithm
from agents.variants import VARIANTS, Variant, build_agent, get_variant, wrap_observations

__all__ = [
    "AgentConfig", "AugmentConfig", "EpisodicControl", "ALGORITHMS", "make_algorithm", "load_algorithm", "VARIANTS",
    "Variant", "get_variant", "build_agent", "wrap_observations",
]
