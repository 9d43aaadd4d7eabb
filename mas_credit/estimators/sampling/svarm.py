"""`svarm`: Stratified SVARM+ — Shapley values from coalition values alone, stratified by size.

Kolpaczki, Bengs, Muschalik & Huellermeier 2024, "Approximating the Shapley value without marginal
contributions" (AAAI 2024, arXiv 2302.00736), Algorithm "Stratified SVARM" with the exact warm-up
("+"). The Shapley value splits into strata by coalition size,

    phi_i = (1/N) sum_{l=0}^{N-1} (phi+_{i,l} - phi-_{i,l}),
    phi+_{i,l} = mean of v(S u {i}) over S without i, |S| = l;  phi-_{i,l} = mean of v(S) over the same S,

so every sampled coalition A of size s updates N strata at once: phi+_{i,s-1} for each i in A and
phi-_{i,s} for each i outside it. The warm-up evaluates the empty and grand coalitions, every
singleton and every N - 1 coalition (2N + 2, the method's minimum budget), which makes the strata of
sizes 0, 1, N-1 and N exact; the rest of the budget samples sizes s in 2..N-2 from the paper's
distribution P(s) ∝ 1/s below N/2 and ∝ 1/(N - s) above it (for even N the middle size gets
1 / (N log N) and the two sides share the rest), members uniformly within a size.

Each stratum's estimate is the mean of its draws, so phi is linear in the values (one [K, N]
matrix per design). Ours: a stratum that no draw reached (small budgets) takes the linear
interpolation of its nearest reached strata of the same agent and sign (the paper leaves it at 0),
counted as `svarm/empty_strata` (their share); a coalition drawn twice counts twice in its strata.
Unbiased where every stratum was reached. credit = phi; advantage = agent_norm(phi).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from mas_credit.coalitions import full_mask, masks_to_bits
from mas_credit.estimators import register_estimator
from mas_credit.estimators.sampling._design import (
    MAX_DRAWS_PER_EVAL,
    BudgetConfig,
    budget_needs,
    budgeted_credit,
    design_rng,
    design_values,
    draw_of_size,
)
from mas_credit.types import Credit, CreditBatch

NAME = "svarm"
MIN_AGENTS = 3


@dataclass
class SvarmConfig(BudgetConfig):
    def check(self):
        self.check_budget_knobs(NAME)


def minimum_budget(n_agents: int) -> int:
    return min(2 * n_agents + 2, 1 << n_agents)


def size_distribution(n_agents: int) -> np.ndarray:
    """[N + 1] the paper's P(s) over sizes 2..N-2 (0 elsewhere)."""
    n = n_agents
    probs = np.zeros(n + 1)
    if n < 4:
        return probs
    if n % 2 == 1:
        half = (n - 1) // 2
        h = sum(1.0 / s for s in range(2, half + 1))  # H_{(n-1)/2} - 1
        for s in range(2, n - 1):
            probs[s] = 1.0 / (2 * min(s, n - s) * h)
        return probs
    half = n // 2
    h = sum(1.0 / s for s in range(2, half))  # H_{n/2 - 1} - 1
    nlogn = n * math.log(n)
    for s in range(2, n - 1):
        if s == half:
            probs[s] = 1.0 / nlogn
        elif h > 0:
            probs[s] = (nlogn - 1.0) / (2 * min(s, n - s) * nlogn * h)
    return probs / probs.sum()  # n = 4: the middle size alone


def svarm_budget(cfg: SvarmConfig, n_agents: int) -> int:
    if n_agents < MIN_AGENTS:
        raise ValueError(
            f"estimator '{NAME}' needs at least {MIN_AGENTS} agents (its strata of sizes 0, 1, N-1 and N cover every "
            f"coalition below that); got {n_agents}: use the exact shapley estimator"
        )
    return cfg.resolved_budget(
        NAME, n_agents, minimum_budget(n_agents), "the warm-up: empty, grand, every singleton and every N-1 coalition"
    )


@lru_cache(maxsize=32)
def _design(n_agents: int, budget: int, seed: int) -> tuple:
    """(the distinct coalitions: the warm-up's then the draws', the draws in order (with repeats))."""
    full = full_mask(n_agents)
    warm = [0, full, *(1 << i for i in range(n_agents)), *(full ^ (1 << i) for i in range(n_agents))]
    seen = dict.fromkeys(warm)
    probs = size_distribution(n_agents)
    draws = []
    if probs.sum() > 0:
        rng = design_rng(NAME, n_agents, budget, seed)
        for _ in range(MAX_DRAWS_PER_EVAL * budget):
            mask = draw_of_size(rng, n_agents, int(rng.choice(n_agents + 1, p=probs)))
            if mask not in seen and len(seen) >= budget:
                break
            seen.setdefault(mask, None)
            draws.append(mask)
    return tuple(seen), tuple(draws)


@lru_cache(maxsize=32)
def svarm_matrix(n_agents: int, budget: int, seed: int) -> tuple[torch.Tensor, float]:
    """(M [K, N] with phi = V @ M over the design's coalitions, the share of strata no draw reached)."""
    n = n_agents
    masks, draws = _design(n, budget, seed)
    column = {m: k for k, m in enumerate(masks)}
    full = full_mask(n)
    # entries[sign][i][l] = list of (column, weight) whose weighted sum is that stratum's estimate
    plus = [[None] * n for _ in range(n)]
    minus = [[None] * n for _ in range(n)]
    for i in range(n):
        bit = 1 << i
        plus[i][0] = [(column[bit], 1.0)]  # v({i})
        minus[i][0] = [(column[0], 1.0)]  # v(empty)
        plus[i][n - 1] = [(column[full], 1.0)]  # v(N)
        minus[i][n - 1] = [(column[full ^ bit], 1.0)]  # v(N minus i)
        if n >= 3:
            others = [j for j in range(n) if j != i]
            minus[i][1] = [(column[1 << j], 1.0 / (n - 1)) for j in others]  # singletons without i
            plus[i][n - 2] = [(column[full ^ (1 << j)], 1.0 / (n - 1)) for j in others]  # N-1 coalitions with i
    bits = masks_to_bits(list(draws), n) if draws else np.zeros((0, n), dtype=bool)
    sizes = bits.sum(axis=1)
    for i in range(n):
        for sign, table, hit, level in ((1, plus, bits[:, i], sizes - 1), (-1, minus, ~bits[:, i], sizes)):
            for level_value in np.unique(level[hit]) if hit.any() else ():
                if table[i][level_value] is not None:
                    continue
                rows = np.flatnonzero(hit & (level == level_value))
                table[i][level_value] = [(column[draws[r]], 1.0 / len(rows)) for r in rows]
    matrix = np.zeros((len(masks), n))
    empty = 0
    for i in range(n):
        for sign, table in ((1.0, plus), (-1.0, minus)):
            for level, weight in _interpolated(table[i]):
                for col, w in table[i][level]:
                    matrix[col, i] += sign * weight * w / n
            empty += sum(entry is None for entry in table[i])
    return torch.from_numpy(matrix), empty / (2 * n * n)


def _interpolated(strata: list) -> list[tuple[int, float]]:
    """(level, multiplicity) over the reached strata, each counted once for itself plus its share of
    every unreached stratum between it and the next reached one (linear interpolation)."""
    reached = [level for level, entry in enumerate(strata) if entry is not None]
    weight = dict.fromkeys(reached, 1.0)
    for level, entry in enumerate(strata):
        if entry is not None:
            continue
        below = max((r for r in reached if r < level), default=None)
        above = min((r for r in reached if r > level), default=None)
        if below is None or above is None:
            weight[below if above is None else above] += 1.0
            continue
        t = (level - below) / (above - below)
        weight[below] += 1.0 - t
        weight[above] += t
    return list(weight.items())


@register_estimator(
    NAME,
    SvarmConfig,
    lambda cfg, n: budget_needs(cfg, _design(n, svarm_budget(cfg, n), cfg.seed)[0]),
    granularity="multi-agent",
    family="game-theoretic (sampled Shapley: Stratified SVARM+)",
)
def svarm(batch: CreditBatch, cfg: SvarmConfig) -> Credit:
    """credit [B, N] = the stratified estimate of phi; advantage [B, T] = agent_norm(phi) (or phi)."""
    n_agents = batch.n_agents
    budget = svarm_budget(cfg, n_agents)
    masks, _ = _design(n_agents, budget, cfg.seed)
    values = design_values(batch, masks, NAME)
    matrix, empty = svarm_matrix(n_agents, budget, cfg.seed)
    phi = values @ matrix.to(values.device, values.dtype)
    metrics = {f"{NAME}/evals": float(len(masks)), f"{NAME}/empty_strata": empty}
    return budgeted_credit(batch, cfg, phi, metrics)
