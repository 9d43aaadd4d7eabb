"""`dr_mas`: agent-wise advantage normalisation (Feng et al. 2026, Dr. MAS).

Code: langfengQ/DrMAS, `compute_grpo_outcome_advantage` with `group_by_agent_id=True`.

Rows are turns (agent invocations). Row (b, t) of agent k carries R_b, or agent k's own
reward component when `reward` names one (e.g. `correct`). Rows are grouped by
(task group g, agent k); the statistics are over the rows of agent k in group g —
|Y_k| rows (`row_stats: steps`), or one per trajectory (`row_stats: trajectories`, the
first row of each (key, episode) as DrMAS' `seen_pairs` does):

    A_row = (r_row - mean_{g,k}) / (std_{g,k} + eps)     std unbiased; a singleton key
                                                         gets mean 0, std 1

credit = R broadcast to the agents that acted. Knobs for the ablation asked for in
DrMAS issue #81: `group_by_agent: false` pools all agents of a group (GRPO over rows),
`norm_by_std: false` subtracts the mean only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mas_credit.estimators import Needs, register_estimator
from mas_credit.estimators.common import EPS, BaseConfig, check_choice, normalise, team_credit
from mas_credit.types import Credit, CreditBatch


@dataclass
class DrMasConfig(BaseConfig):
    group_by_agent: bool = True
    """statistics per (group, agent) (Dr. MAS) or per group over all agents' rows"""
    row_stats: str = "steps"
    """steps: every turn is a row | trajectories: one row per (key, episode)"""
    norm_by_std: bool = True
    """divide by the std, or only subtract the mean"""
    reward: str = "team"
    """team: every row carries R | a component name (e.g. correct): the agent's own component"""
    eps: float = EPS

    def check(self):
        check_choice("dr_mas", "row_stats", self.row_stats, ("steps", "trajectories"))


def row_rewards(batch: CreditBatch, reward: str) -> torch.Tensor:
    """[B, T] reward of each row (0 on padding)."""
    if reward == "team":
        per_agent = batch.reward[:, None].expand(-1, batch.n_agents)
    elif reward in batch.components:
        per_agent = batch.components[reward]
    else:
        raise ValueError(f"estimator 'dr_mas': reward '{reward}' is neither 'team' nor a component of this game "
                         f"(components: {', '.join(sorted(batch.components)) or 'none'})")
    turns = batch.turn_agent >= 0
    rows = torch.gather(per_agent, 1, batch.turn_agent.clamp(min=0))
    return torch.where(turns, rows, torch.zeros_like(rows))


@register_estimator("dr_mas", DrMasConfig, lambda cfg, n: Needs(groups=True),
                    granularity="multi-agent",
                    family="Monte Carlo (agent-wise normalised group baseline; survey: Agent-wise Adv.)")
def dr_mas(batch: CreditBatch, cfg: DrMasConfig) -> Credit:
    """credit [B, N] = R broadcast; advantage [B, T] = each row normalised within its (group, agent)."""
    batch_size, n_turns, n_agents = batch.batch_size, batch.n_turns, batch.n_agents
    turns = batch.turn_agent >= 0                                                    # [B, T] False = padding
    rows = row_rewards(batch, cfg.reward)                                             # [B, T]
    agent = batch.turn_agent.clamp(min=0)
    key = batch.group[:, None] * n_agents + agent if cfg.group_by_agent else batch.group[:, None].expand(-1, n_turns)
    n_keys = (int(batch.group.max()) + 1) * (n_agents if cfg.group_by_agent else 1)
    weight = turns
    if cfg.row_stats == "trajectories":  # first row of each (key, episode)
        same_key = (key[:, :, None] == key[:, None, :]) & turns[:, None, :]          # [B, T, T]
        earlier = torch.ones(n_turns, n_turns, dtype=torch.bool, device=batch.device).tril(-1)
        weight = turns & ~(same_key & earlier).any(dim=2)
    adv = normalise(rows.reshape(-1), key.reshape(-1), weight.reshape(-1), n_keys, cfg.eps, cfg.norm_by_std)
    advantage = torch.where(turns, adv.reshape(batch_size, n_turns), torch.zeros_like(rows))
    return Credit(credit=team_credit(batch), advantage=advantage)
