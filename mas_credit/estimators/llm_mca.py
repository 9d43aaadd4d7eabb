"""`llm_mca`: an LLM critic splits the team reward (Nagpal et al. 2025, LLM-MCA, AAMAS).

One critic call per episode (batched) reads the game card, the quoted
transcript and R, and answers JSON shares (`mas_credit.agents.critic`: prompt, the
strict-then-lenient parser, counted fallbacks).

    credit[b, i]  = share_{b,i} * R_b           (shares >= 0, sum 1: credit sums to R)
    advantage     = agent_norm(credit) on each agent's turns

Ours: shares rather than free scores, so the credit "numerically decomposes the
environment reward"; an unparseable answer gives uniform shares over the agents that
acted, counted as `critic/fallback`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mas_credit.estimators import Needs, register_estimator
from mas_credit.estimators.common import EPS, BaseConfig, agent_norm, to_turns
from mas_credit.types import Credit, CreditBatch


@dataclass
class LlmMcaConfig(BaseConfig):
    eps: float = EPS


@register_estimator("llm_mca", LlmMcaConfig, lambda cfg, n: Needs(critic=True, groups=True),
                    granularity="multi-agent",
                    family="model-based / LLM-as-critic (survey: LLM-Critic)")
def llm_mca(batch: CreditBatch, cfg: LlmMcaConfig) -> Credit:
    """credit [B, N] = critic share * R; advantage [B, T] = agent_norm(credit) on each agent's turns."""
    missing = torch.isnan(batch.critic_share).any(dim=1)
    if missing.any():
        b = int(missing.nonzero()[0])
        raise ValueError(f"estimator 'llm_mca' needs the critic's shares, but episode {b} has none; "
                         f"score the episodes first: agents.critic.fill_critic(game, critic, episodes)")
    credit = batch.critic_share * batch.reward[:, None]                                     # [B, N]
    agent_adv = agent_norm(credit, batch.group, batch.acted, cfg.eps)
    return Credit(credit=credit, advantage=to_turns(agent_adv, batch.turn_agent),
                  metrics={"critic/fallback": float(batch.critic_fallback.sum())})
