"""`dr_mas`: agent-wise advantage normalisation (Feng et al. 2026, Dr. MAS).

Code: langfengQ/DrMAS, `verl/trainer/ppo/core_algos.py::compute_grpo_outcome_advantage`
(commit 19c632bc0f75730b6db98d90b5035ee9bb7f66d1); the defaults are its
`group_by_agent_id=True` form, ported in tests/test_reference_ports.py.

Rows are turns (agent invocations). Row (b, t) of agent k carries R_b, or agent k's own
reward component when `reward` names one (e.g. `correct`). Rows are grouped by key:
(task group g, agent k) with `group_by_agent: true`, the task group g alone with `false`.
The samples a key's statistics are taken over:

- `row_stats: steps` — every row of the key is a sample, its own reward (DrMAS with
  `group_by_agent_id=True`, where the index holds the key);
- `row_stats: trajectories` — one sample per (key, episode): the mean reward of that
  episode's rows in the key, and every row gets its trajectory's advantage (DrMAS with
  `group_by_agent_id=False`, which averages each trajectory's rows).

    A_row = (r_sample - mean_key) / (std_key + eps)   std unbiased; a key with one sample
                                                      gets mean 0, std 1

Each row is normalised with the statistics of the samples it belongs to, so |A| stays
below sqrt(samples) and never reaches 1/eps. DrMAS's `episode_norm_reward` takes each
trajectory's first row as the sample but normalises every row's own reward with it; it is
the same as `trajectories` when an episode's rows share one reward (`reward: team`), and
otherwise divides by a zero std (advantages of 1/eps), so it is not offered.

credit = R broadcast to the agents that acted. Knobs for the ablation asked for in
DrMAS issue #81: `group_by_agent: false` pools all agents of a group, `norm_by_std:
false` subtracts the mean only.
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
    """steps: every turn is a sample | trajectories: one sample per (key, episode), the mean of its rows"""
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
        raise ValueError(
            f"estimator 'dr_mas': reward '{reward}' is neither 'team' nor a component of this game "
            f"(components: {', '.join(sorted(batch.components)) or 'none'})"
        )
    turns = batch.turn_agent >= 0
    rows = torch.gather(per_agent, 1, batch.turn_agent.clamp(min=0))
    return torch.where(turns, rows, torch.zeros_like(rows))


@register_estimator(
    "dr_mas",
    DrMasConfig,
    lambda cfg, n: Needs(groups=True),
    granularity="multi-agent",
    family="Monte Carlo (agent-wise normalised group baseline; survey: Agent-wise Adv.)",
)
def dr_mas(batch: CreditBatch, cfg: DrMasConfig) -> Credit:
    """credit [B, N] = R broadcast; advantage [B, T] = each row normalised within its (group, agent)."""
    batch_size, n_turns, n_agents = batch.batch_size, batch.n_turns, batch.n_agents
    turns = batch.turn_agent >= 0  # [B, T] False = padding
    rows = row_rewards(batch, cfg.reward)  # [B, T]
    agent = batch.turn_agent.clamp(min=0)
    key = batch.group[:, None] * n_agents + agent if cfg.group_by_agent else batch.group[:, None].expand(-1, n_turns)
    n_keys = (int(batch.group.max()) + 1) * (n_agents if cfg.group_by_agent else 1)
    weight = turns
    if cfg.row_stats == "trajectories":
        # every row carries its trajectory's mean reward (a trajectory: the episode's rows in one key)
        part = agent if cfg.group_by_agent else torch.zeros_like(agent)  # [B, T] trajectory within the episode
        n_parts = n_agents if cfg.group_by_agent else 1
        w = turns.to(rows.dtype)
        sums = torch.zeros(batch_size, n_parts, dtype=rows.dtype, device=rows.device).scatter_add_(1, part, rows * w)
        counts = torch.zeros_like(sums).scatter_add_(1, part, w)
        rows = torch.gather(sums / counts.clamp(min=1), 1, part)
        # ... and counts once in the statistics: its first row is the sample
        same_key = (key[:, :, None] == key[:, None, :]) & turns[:, None, :]  # [B, T, T]
        earlier = torch.ones(n_turns, n_turns, dtype=torch.bool, device=batch.device).tril(-1)
        weight = turns & ~(same_key & earlier).any(dim=2)
    adv = normalise(rows.reshape(-1), key.reshape(-1), weight.reshape(-1), n_keys, cfg.eps, cfg.norm_by_std)
    advantage = torch.where(turns, adv.reshape(batch_size, n_turns), torch.zeros_like(rows))
    return Credit(credit=team_credit(batch), advantage=advantage)
