"""Masked group statistics and the small pieces every estimator shares.

All averaging over padded turns or absent agents goes through `group_stats`, whose
weight argument is the mask: weight 0 = the entry does not exist (padding, an agent
that did not act, a dropped row); a weight of 2 counts the entry twice (M-GRPO's
duplicated rows). Nothing here knows about a particular estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mas_credit.types import COUNTERFACTUAL_MODES as CF_MODES
from mas_credit.types import CreditBatch

EPS = 1e-6


@dataclass
class BaseConfig:
    """Knobs every estimator has."""

    device: str = "auto"
    """auto | cpu | cuda: where the estimator's tensors live (auto = cuda when present)"""


@dataclass
class CounterfactualConfig(BaseConfig):
    """Knobs of the estimators that read counterfactual values."""

    counterfactual: str = "replay"
    """replay (recorded actions, absent agents null) | resample (re-run with the team's policies)"""
    samples: int = 1
    """resample: re-runs per counterfactual value"""


def check_choice(estimator: str, knob: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(
            f"estimator '{estimator}': {knob} '{value}' is not valid; valid choices: {', '.join(map(str, choices))}"
        )


def check_cf(estimator: str, cfg: CounterfactualConfig) -> None:
    """The knobs of `CounterfactualConfig`."""
    check_choice(estimator, "counterfactual", cfg.counterfactual, CF_MODES)
    if cfg.samples < 1:
        raise ValueError(
            f"estimator '{estimator}': samples must be >= 1 (re-runs per counterfactual value), got {cfg.samples}"
        )


def group_stats(x: torch.Tensor, key: torch.Tensor, weight: torch.Tensor, n_keys: int, unbiased: bool = True):
    """Per-key weighted mean and std of x.

    x, key, weight: [M] (key in 0..n_keys-1; weight 0 = not an entry, k = counted k times).
    Returns mean [n_keys], std [n_keys], count [n_keys]. A key with total weight 1 (a
    group of one) gets mean 0 and std 1 (verl/DrMAS convention), so its entry keeps its
    raw value; a key with no entries gets mean 0, std 1 (unused). A key whose entries are
    all equal gets that value as its mean exactly (not sum / count, which can be off in the
    last bit), so they normalise to exactly 0.
    """
    weight = weight.to(x.dtype)
    count = torch.zeros(n_keys, dtype=x.dtype, device=x.device).index_add_(0, key, weight)
    total = torch.zeros_like(count).index_add_(0, key, weight * x)
    mean = total / count.clamp(min=1e-12)
    entry = weight > 0
    inf = torch.full_like(count, float("inf"))
    hi = (-inf).scatter_reduce(0, key, torch.where(entry, x, -float("inf")), reduce="amax")
    lo = inf.scatter_reduce(0, key, torch.where(entry, x, float("inf")), reduce="amin")
    mean = torch.where(hi == lo, hi, mean)
    dev = torch.zeros_like(count).index_add_(0, key, weight * (x - mean[key]) ** 2)
    denom = (count - 1.0) if unbiased else count
    std = torch.sqrt(dev / denom.clamp(min=1e-12))
    lonely = count <= 1.0
    mean = torch.where(lonely, torch.zeros_like(mean), mean)
    std = torch.where(lonely, torch.ones_like(std), std)
    return mean, std, count


def normalise(
    x: torch.Tensor, key: torch.Tensor, weight: torch.Tensor, n_keys: int, eps: float = EPS, by_std: bool = True
) -> torch.Tensor:
    """(x - mean_key) / (std_key + eps), statistics over the weighted entries of each key."""
    mean, std, _ = group_stats(x, key, weight, n_keys)
    out = x - mean[key]
    return out / (std[key] + eps) if by_std else out


def agent_norm(x: torch.Tensor, group: torch.Tensor, mask: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Agent-wise group normalisation (docs/estimators.md, "Shared math").

    x [B, N]; group [B]; mask [B, N] (False = the agent did not act: excluded from the
    statistics and given 0). For agent i in group g: (x - mean_{g,i}) / (std_{g,i} + eps).
    """
    batch_size, n_agents = x.shape
    key = (group[:, None] * n_agents + torch.arange(n_agents, device=x.device)).reshape(-1)  # [B*N]
    n_keys = (int(group.max()) + 1) * n_agents
    out = normalise(x.reshape(-1), key, mask.reshape(-1), n_keys, eps).reshape(batch_size, n_agents)
    return torch.where(mask, out, torch.zeros_like(out))


def to_turns(per_agent: torch.Tensor, turn_agent: torch.Tensor) -> torch.Tensor:
    """[B, N] per-agent values -> [B, T] on each agent's turns; 0 on padding (-1)."""
    idx = turn_agent.clamp(min=0)
    out = torch.gather(per_agent, 1, idx)
    return torch.where(turn_agent >= 0, out, torch.zeros_like(out))


def require_coalitions(batch: CreditBatch, masks, estimator: str, hint: str) -> torch.Tensor:
    """v(S) [B, M] of the given coalitions (Python-int bitmasks, any team size; dense or sparse
    batch), or a clear error naming the first episode with a gap."""
    values = batch.values_at(masks)
    missing = torch.isnan(values)
    if missing.any():
        b = int(missing.any(dim=1).nonzero()[0])
        raise ValueError(
            f"estimator '{estimator}' needs coalition values that episode {b} lacks; "
            f"fill them first: {hint} (or counterfactual.fill_needs(game, episodes, estimator.needs(cfg, n_agents)))"
        )
    return values


def loo_values(batch: CreditBatch, estimator: str) -> torch.Tensor:
    """v(N minus {i}) [B, N]."""
    full = (1 << batch.n_agents) - 1
    masks = [full & ~(1 << i) for i in range(batch.n_agents)]
    return require_coalitions(batch, masks, estimator, "fill_coalitions(game, episodes, masks='loo')")


def team_credit(batch: CreditBatch) -> torch.Tensor:
    """The team reward broadcast to every agent that acted: [B, N] (0 where it did not)."""
    reward = batch.reward[:, None].expand(-1, batch.n_agents)  # [B, N]
    return torch.where(batch.acted, reward, torch.zeros_like(reward))
