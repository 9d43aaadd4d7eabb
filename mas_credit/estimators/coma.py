"""`coma`: counterfactual baseline over re-drawn own actions (Foerster et al. 2018, COMA).

COMA's eq. 4, with the expectation over agent i's own policy estimated by re-drawing
its actions.

    credit[b, i] = R_b - E_{a' ~ pi_i}[R(a', a_{-i})]  ~  R_b - mean_k R(a'_k, a_{-i})

k = `samples` re-draws of agent i's turns; the other agents keep their recorded actions
(`counterfactual: replay`) or, in turn-based games, are re-drawn after agent i's first
turn (`resample`). advantage = credit on each agent's turns (`normalise: none`) or
agent_norm(credit). An agent that never acted gets credit 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mas_credit.estimators import Needs, register_estimator
from mas_credit.estimators.common import CF_MODES, BaseConfig, agent_norm, check_choice, to_turns
from mas_credit.types import Credit, CreditBatch


@dataclass
class ComaConfig(BaseConfig):
    samples: int = 4
    """re-draws of each agent's actions from its policy (the expectation's sample size)"""
    counterfactual: str = "replay"
    """replay: the others keep their actions | resample: later turns are re-drawn too"""
    normalise: str = "none"
    """none: advantage = credit | agent: agent_norm(credit)"""

    def check(self):
        check_choice("coma", "counterfactual", self.counterfactual, CF_MODES)
        check_choice("coma", "normalise", self.normalise, ("none", "agent"))
        if self.samples < 1:
            raise ValueError(f"estimator 'coma': samples must be >= 1, got {self.samples}")


@register_estimator(
    "coma",
    ComaConfig,
    lambda cfg, n: Needs(alternatives=cfg.samples, mode=cfg.counterfactual, groups=cfg.normalise == "agent"),
    granularity="multi-agent",
    family="game-theoretic (counterfactual baseline over re-drawn actions; COMA)",
)
def coma(batch: CreditBatch, cfg: ComaConfig) -> Credit:
    """credit [B, N] = R - mean re-drawn value; advantage [B, T] on each agent's turns."""
    missing = torch.isnan(batch.alternative) & batch.acted
    if missing.any():
        b = int(missing.any(dim=1).nonzero()[0])
        raise ValueError(
            f"estimator 'coma' needs re-drawn values that episode {b} lacks; fill them first: "
            f"counterfactual.fill_alternatives(game, team, episodes, k={cfg.samples})"
        )
    credit = torch.where(batch.acted, batch.reward[:, None] - batch.alternative, torch.zeros_like(batch.alternative))
    agent_adv = agent_norm(credit, batch.group, batch.acted) if cfg.normalise == "agent" else credit
    return Credit(credit=credit, advantage=to_turns(agent_adv, batch.turn_agent))
