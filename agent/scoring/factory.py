"""Build the configured scorer. The learned one needs the model and a backend; the classical one nothing."""

from __future__ import annotations

import logging

from mediqa.agent.config import AgentConfig
from mediqa.agent.scoring.base import Scorer
from mediqa.agent.scoring.classical import ClassicalScorer

log = logging.getLogger(__name__)


def make_scorer(config: AgentConfig) -> Scorer:
    if config.scoring.scorer == "classical":
        return ClassicalScorer()
    from mediqa.agent.scoring.learned import LearnedScorer

    return LearnedScorer.from_config(config)
