"""Scenarios by name. Third-party scenarios register under the `myriad.scenarios` entry points."""

from agents.registry import Registry
from agents.scenarios.base import Observations, RoundResult, Scenario
from agents.scenarios.guess_two_thirds import GuessTwoThirds
from agents.scenarios.social import SocialNetwork

__all__ = ["SCENARIOS", "Observations", "RoundResult", "Scenario"]

SCENARIOS: Registry[type[Scenario]] = Registry("scenario", "myriad.scenarios")
SCENARIOS.register("guess_two_thirds")(GuessTwoThirds)
SCENARIOS.register("social")(SocialNetwork)
