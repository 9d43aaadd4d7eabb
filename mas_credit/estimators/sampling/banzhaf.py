"""`banzhaf`: the Banzhaf value by maximum sample reuse (MSR), within a budget of coalitions.

Wang & Jia 2023, "Data Banzhaf: a robust data valuation framework for machine learning" (AISTATS
2023, arXiv 2205.15466), Algorithm 1 (MSR): the Banzhaf value of agent i,

    beta_i = 2^-(N-1) sum_{S without i} (v(S u {i}) - v(S)) = E[v(S) | i in S] - E[v(S) | i not in S]

for S uniform over all coalitions, is estimated from one set of coalition draws reused for every
agent: the mean of the values of the draws that hold i minus the mean of those that do not. Ours:
draws come in complementary pairs (S, N minus S) — S uniform means each agent is in with probability
1/2, and its complement is uniform too — so every agent is in exactly half the draws (no agent is
left without an estimate) and each mean is unbiased. Minimum budget 2 (one pair).

The Banzhaf value is a different index from Shapley's: it is not efficient (its shares need not
sum to v(N) - v(empty)) and gives a unanimity team of k members 1/2^(k-1) each, where Shapley gives
1/k; the two agree on games of order <= 2. Studies score it against exact Shapley like every
estimator, so on higher-order games its error includes the difference of the indices.
credit = beta; advantage = agent_norm(beta) (knob `normalise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np
import torch

from mas_credit.coalitions import masks_to_bits
from mas_credit.estimators import register_estimator
from mas_credit.estimators.sampling._design import (
    BudgetConfig,
    budget_needs,
    budgeted_credit,
    design_rng,
    design_values,
    paired_draws,
)
from mas_credit.types import Credit, CreditBatch

NAME = "banzhaf"


@dataclass
class BanzhafConfig(BudgetConfig):
    def check(self):
        self.check_budget_knobs(NAME)


def binomial_sizes(n_agents: int) -> np.ndarray:
    """[N + 1] the size distribution of a uniform coalition: C(N, s) / 2^N."""
    probs = np.array([comb(n_agents, s) for s in range(n_agents + 1)], dtype=float)
    return probs / probs.sum()


def banzhaf_budget(cfg: BanzhafConfig, n_agents: int) -> int:
    return cfg.resolved_budget(NAME, n_agents, 2, "one complementary pair")


@lru_cache(maxsize=32)
def _design(n_agents: int, budget: int, seed: int) -> tuple[tuple, dict]:
    masks, counts = paired_draws(design_rng(NAME, n_agents, budget, seed), n_agents, budget, binomial_sizes(n_agents))
    return tuple(masks), counts


@lru_cache(maxsize=32)
def banzhaf_matrix(n_agents: int, budget: int, seed: int) -> torch.Tensor:
    """M [K, N] with beta = V @ M: each draw weighs +1/(draws holding i) or -1/(draws without i)."""
    masks, counts = _design(n_agents, budget, seed)
    bits = masks_to_bits(list(masks), n_agents)  # [K, N]
    draws = np.array([counts[m] for m in masks], dtype=float)[:, None]  # [K, 1] multiplicity
    inside = (draws * bits).sum(axis=0)  # [N]
    outside = (draws * ~bits).sum(axis=0)
    matrix = np.where(bits, draws / np.maximum(inside, 1), -draws / np.maximum(outside, 1))
    return torch.from_numpy(matrix)


@register_estimator(
    NAME,
    BanzhafConfig,
    lambda cfg, n: budget_needs(cfg, _design(n, banzhaf_budget(cfg, n), cfg.seed)[0]),
    granularity="multi-agent",
    family="game-theoretic (Banzhaf value, maximum sample reuse)",
)
def banzhaf(batch: CreditBatch, cfg: BanzhafConfig) -> Credit:
    """credit [B, N] = the MSR estimate of the Banzhaf value; advantage [B, T] = agent_norm(beta)."""
    n_agents = batch.n_agents
    budget = banzhaf_budget(cfg, n_agents)
    masks, _ = _design(n_agents, budget, cfg.seed)
    values = design_values(batch, masks, NAME)
    beta = values @ banzhaf_matrix(n_agents, budget, cfg.seed).to(values.device, values.dtype)
    return budgeted_credit(batch, cfg, beta, {f"{NAME}/evals": float(len(masks))})
