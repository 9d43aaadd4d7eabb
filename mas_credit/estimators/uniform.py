"""`uniform`: equal shares for every agent that acted (the baseline beside llm_mca).

    credit[b, i]  = (R_b - v_b(empty)) / |acted_b|   for the agents that acted, else 0
                    (`baseline: empty`, default; `none`: R_b / |acted_b|)
    advantage     = agent_norm(credit) on each agent's turns

It is exactly what llm_mca falls back to when the critic's answer cannot be read, so a
study puts it beside llm_mca: a critic earns its cost only where it beats this.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mas_credit.estimators import Needs, register_estimator
from mas_credit.estimators.common import EPS, BaseConfig, agent_norm, check_choice, require_coalitions, to_turns
from mas_credit.types import Credit, CreditBatch


@dataclass
class UniformConfig(BaseConfig):
    baseline: str = "empty"
    """empty: split R - v(empty), as llm_mca does by default | none: split R"""
    eps: float = EPS

    def check(self):
        check_choice("uniform", "baseline", self.baseline, ("empty", "none"))


def baseline_needs(cfg, critic: bool = False) -> Needs:
    """What splitting R - v(empty) (`baseline: empty`) or R needs: the empty coalition's value
    (nobody acts, so replay and resample agree), and the critic for llm_mca."""
    if cfg.baseline == "empty":
        return Needs(coalitions=(0,), kind="empty", critic=critic, groups=True)
    return Needs(critic=critic, groups=True)


def decomposed(batch: CreditBatch, baseline: str, estimator: str) -> torch.Tensor:
    """[B] what the shares split: R - v(empty), or R."""
    if baseline == "none":
        return batch.reward
    return (
        batch.reward
        - require_coalitions(batch, [0], estimator, "counterfactual.fill_coalitions(game, episodes, [0])")[:, 0]
    )


@register_estimator(
    "uniform",
    UniformConfig,
    lambda cfg, n: baseline_needs(cfg),
    granularity="multi-agent (equal shares)",
    family="baseline (what an LLM critic falls back to)",
)
def uniform(batch: CreditBatch, cfg: UniformConfig) -> Credit:
    """credit [B, N] = equal shares of R - v(empty) (or R) over the agents that acted."""
    acted = batch.acted.to(batch.reward.dtype)
    shares = acted / acted.sum(dim=1, keepdim=True).clamp(min=1)
    credit = shares * decomposed(batch, cfg.baseline, "uniform")[:, None]
    return Credit(
        credit=credit, advantage=to_turns(agent_norm(credit, batch.group, batch.acted, cfg.eps), batch.turn_agent)
    )
