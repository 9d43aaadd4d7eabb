"""`loo`: difference rewards (Wolpert & Tumer 2002), leave-one-out credit.

    credit[b, i] = R_b - v_b(N minus {i})

i.e. what the team loses when agent i plays its null action. advantage = credit on
each agent's turns (`normalise: none`, the raw difference reward) or agent_norm(credit)
(`normalise: agent`). N coalition evaluations per episode.
"""

from __future__ import annotations

from dataclasses import dataclass

from mas_credit.estimators import Needs, register_estimator
from mas_credit.estimators.common import CounterfactualConfig, agent_norm, check_cf, check_choice, loo_values, to_turns
from mas_credit.types import Credit, CreditBatch


@dataclass
class LooConfig(CounterfactualConfig):
    normalise: str = "none"
    """none: advantage = the difference reward | agent: agent_norm of it"""

    def check(self):
        check_choice("loo", "normalise", self.normalise, ("none", "agent"))
        check_cf("loo", self)


def loo_masks(n_agents: int) -> tuple:
    full = (1 << n_agents) - 1
    return tuple([full] + [full & ~(1 << i) for i in range(n_agents)])


@register_estimator(
    "loo",
    LooConfig,
    lambda cfg, n: Needs(
        coalitions=loo_masks(n), kind="loo", mode=cfg.counterfactual, k=cfg.samples, groups=cfg.normalise == "agent"
    ),
    granularity="multi-agent",
    family="game-theoretic (leave-one-out difference rewards)",
)
def loo(batch: CreditBatch, cfg: LooConfig) -> Credit:
    """credit [B, N] = R - v(N minus {i}); advantage [B, T] on each agent's turns."""
    credit = batch.reward[:, None] - loo_values(batch, "loo")  # [B, N]
    agent_adv = agent_norm(credit, batch.group, batch.acted) if cfg.normalise == "agent" else credit
    return Credit(credit=credit, advantage=to_turns(agent_adv, batch.turn_agent))
