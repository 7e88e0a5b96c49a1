"""Agent kinds by name. Third-party kinds register under the `myriad.kinds` entry-point group."""

from agents.core import Agent
from agents.kinds.guessing import Adaptive, EfficiencyProbe, LevelK, UniformRandom
from agents.kinds.llm_guess import LLMGuesser
from agents.kinds.llm_social import LLMSocial
from agents.kinds.social import Threshold, Voter
from agents.registry import Registry

__all__ = ["KINDS"]

KINDS: Registry[type[Agent]] = Registry("agent kind", "myriad.kinds")
KINDS.register("uniform")(UniformRandom)
KINDS.register("level_k")(LevelK)
KINDS.register("adaptive")(Adaptive)
KINDS.register("probe")(EfficiencyProbe)
KINDS.register("threshold")(Threshold)
KINDS.register("voter")(Voter)
KINDS.register("llm_guess")(LLMGuesser)
KINDS.register("llm_social")(LLMSocial)
