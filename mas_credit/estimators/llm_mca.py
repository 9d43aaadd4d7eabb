"""`llm_mca`: an LLM critic splits the team reward (Nagpal et al. 2025, LLM-MCA, AAMAS).

One critic call per episode (batched) reads the game card, the quoted
transcript and R, and answers JSON shares (`mas_credit.agents.critic`: prompt, the
strict-then-lenient parser, counted fallbacks).

    credit[b, i]  = share_{b,i} * (R_b - v_b(empty))   `baseline: empty` (default)
    credit[b, i]  = share_{b,i} * R_b                   `baseline: none` (the paper's form)
    advantage     = agent_norm(credit) on each agent's turns

What it decomposes: by default the part of R the agents earned, R - v(empty) (v(empty):
the team value with every agent playing its null action, one replay per episode), which
is what Shapley values sum to and what a study's `efficiency_gap` scores. The paper's
environments have v(empty) = 0, where both forms agree; in a game where the empty team is
worth something (rampart: absent agents leave a base strength) `none` hands v(empty) out
as credit, a lazy agent included.

Ours: shares rather than free scores (shares >= 0, sum 1, so the credit sums exactly to
what is decomposed), so the credit "numerically decomposes the environment reward"; an
unparseable answer gives uniform shares over the agents that acted, counted as
`critic/fallback`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mas_credit.estimators import register_estimator
from mas_credit.estimators.common import EPS, BaseConfig, agent_norm, check_choice, to_turns
from mas_credit.estimators.uniform import baseline_needs, decomposed
from mas_credit.types import Credit, CreditBatch


@dataclass
class LlmMcaConfig(BaseConfig):
    baseline: str = "empty"
    """empty: the shares split R - v(empty) (what the agents earned) | none: they split R (the paper's form)"""
    eps: float = EPS

    def check(self):
        check_choice("llm_mca", "baseline", self.baseline, ("empty", "none"))


@register_estimator(
    "llm_mca",
    LlmMcaConfig,
    lambda cfg, n: baseline_needs(cfg, critic=True),
    granularity="multi-agent",
    family="model-based / LLM-as-critic (survey: LLM-Critic)",
)
def llm_mca(batch: CreditBatch, cfg: LlmMcaConfig) -> Credit:
    """credit [B, N] = critic share * (R - v(empty)) (or * R); advantage [B, T] = agent_norm(credit) on each agent's
    turns."""
    missing = torch.isnan(batch.critic_share).any(dim=1)
    if missing.any():
        b = int(missing.nonzero()[0])
        raise ValueError(
            f"estimator 'llm_mca' needs the critic's shares, but episode {b} has none; "
            f"score the episodes first: agents.critic.fill_critic(game, critic, episodes)"
        )
    credit = batch.critic_share * decomposed(batch, cfg.baseline, "llm_mca")[:, None]  # [B, N]
    agent_adv = agent_norm(credit, batch.group, batch.acted, cfg.eps)
    return Credit(
        credit=credit,
        advantage=to_turns(agent_adv, batch.turn_agent),
        metrics={"critic/fallback": float(batch.critic_fallback.sum())},
    )
