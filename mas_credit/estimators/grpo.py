"""`grpo`: episode-level group baseline, no decomposition (Shao et al. 2024, DeepSeekMath).

Outcome supervision as in verl's `compute_grpo_outcome_advantage`.

    credit[b, i]    = R_b for every agent that acted (0 for one that did not)
    advantage[b, t] = (R_b - mean_g R) / (std_g R + eps) on every turn of episode b

Statistics over the episodes of group g (`scale: group`), over the whole batch
(`scale: batch`), or none at all (`scale: none`: the raw R, REINFORCE without a
baseline); std unbiased; a group of one gets mean 0, std 1. `norm_by_std: false`
keeps only the mean baseline (Dr. GRPO).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mas_credit.estimators import Needs, register_estimator
from mas_credit.estimators.common import EPS, BaseConfig, check_choice, normalise, team_credit
from mas_credit.types import Credit, CreditBatch


@dataclass
class GrpoConfig(BaseConfig):
    scale: str = "group"
    """group | batch | none: where the baseline's mean and std come from"""
    norm_by_std: bool = True
    """divide by the std (GRPO) or only subtract the mean (Dr. GRPO)"""
    eps: float = EPS

    def check(self):
        check_choice("grpo", "scale", self.scale, ("group", "batch", "none"))


def episode_advantage(
    reward: torch.Tensor, group: torch.Tensor, scale: str, norm_by_std: bool, eps: float
) -> torch.Tensor:
    """[B] GRPO advantage of each episode."""
    if scale == "none":
        return reward.clone()
    key = group if scale == "group" else torch.zeros_like(group)
    return normalise(reward, key, torch.ones_like(reward), int(key.max()) + 1, eps, norm_by_std)


@register_estimator(
    "grpo",
    GrpoConfig,
    lambda cfg, n: Needs(groups=cfg.scale == "group"),
    granularity="episode (the team reward broadcast to every agent)",
    family="Monte Carlo (group baseline; the episode-level baseline)",
)
def grpo(batch: CreditBatch, cfg: GrpoConfig) -> Credit:
    """credit [B, N] = R broadcast; advantage [B, T] = the episode's group-normalised R."""
    adv = episode_advantage(batch.reward, batch.group, cfg.scale, cfg.norm_by_std, cfg.eps)  # [B]
    turns = batch.turn_agent >= 0  # [B, T]
    advantage = torch.where(
        turns,
        adv[:, None].expand_as(turns).to(batch.reward.dtype),
        torch.zeros((), dtype=batch.reward.dtype, device=batch.device),
    )
    return Credit(credit=team_credit(batch), advantage=advantage)
