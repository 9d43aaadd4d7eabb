"""`kernelshap`: paired KernelSHAP with leverage-score sampling, within a budget of coalitions.

Musco & Witter 2025, "Provably accurate Shapley value estimation via leverage score sampling"
(ICLR 2025, arXiv 2410.01917; code rtealwitter/leverageshap, `leverageshap/estimators/leverage_shap.py`
at commit 01747618540e7b8edd0bbea0081eab0762e7763a, whose projection solve this follows):
the Shapley value is the solution of the constrained weighted regression (Lundberg & Lee 2017)

    phi = argmin_{sum phi = v(N) - v(empty)}  sum_S mu(S) (v(S) - v(empty) - sum_{i in S} phi_i)^2,
    mu(S) = (N - 1) / (C(N, |S|) |S| (N - |S|)),

and its leverage scores are equal across coalition sizes, so the sizes are drawn uniformly in
1..N-1 and the members uniformly within a size; each draw brings its complement too (paired
sampling, Covert & Lee 2021), and each coalition is weighed mu(S) / P(S) x its draws, ∝ draws /
(|S| (N - |S|)). The constraint is solved by projection as in the reference code:
phi = c 1 + pinv(P Z^T W Z P) P Z^T W (y - Z 1 c), c = (v(N) - v(empty)) / N, P = I - 1 1^T / N.
Ours: with-replacement draws with multiplicity weights where the paper draws without replacement
(Bernoulli sampling); no ridge term (the pseudo-inverse handles a rank-deficient design).

Exact on games of order <= 2 (every interaction among at most two agents) once the design has
rank N - 1: with pairs only v(S) - v(N minus S) enters the fit, and for such games the true phi
fits it exactly. Minimum budget 2N (the empty and grand coalitions and N - 1 pairs). Not unbiased.
credit = phi; advantage = agent_norm(phi) (knob `normalise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from mas_credit.coalitions import full_mask, masks_to_bits
from mas_credit.estimators import register_estimator
from mas_credit.estimators.sampling._design import (
    BudgetConfig,
    budget_needs,
    budgeted_credit,
    design_rng,
    design_values,
    kernel_weight,
    paired_draws,
    uniform_sizes,
)
from mas_credit.types import Credit, CreditBatch

NAME = "kernelshap"


@dataclass
class KernelShapConfig(BudgetConfig):
    def check(self):
        self.check_budget_knobs(NAME)


def minimum_budget(n_agents: int) -> int:
    return 2 * n_agents


def kernel_budget(cfg: KernelShapConfig, n_agents: int) -> int:
    return cfg.resolved_budget(
        NAME, n_agents, minimum_budget(n_agents), "the empty and grand coalitions and N - 1 pairs"
    )


@lru_cache(maxsize=32)
def _design(n_agents: int, budget: int, seed: int) -> tuple[tuple, dict]:
    rng = design_rng(NAME, n_agents, budget, seed)
    masks, counts = paired_draws(rng, n_agents, budget, uniform_sizes(n_agents), fixed=(0, full_mask(n_agents)))
    return tuple(masks), counts


@lru_cache(maxsize=32)
def kernel_matrix(n_agents: int, budget: int, seed: int) -> torch.Tensor:
    """M [K, N] with phi = V @ M for V [B, K] the values of the design's coalitions (in its order)."""
    masks, counts = _design(n_agents, budget, seed)
    sampled = masks[2:]  # masks[0] = empty, masks[1] = grand
    z = masks_to_bits(list(sampled), n_agents).astype(float)  # [J, N]
    size = z.sum(axis=1)
    w = np.array([counts[m] for m in sampled]) * kernel_weight(size, n_agents)  # [J]
    proj = np.eye(n_agents) - 1.0 / n_agents
    gram = proj @ (z.T * w) @ z @ proj
    gain = np.linalg.pinv(gram, rcond=1e-10, hermitian=True) @ proj @ (z.T * w)  # G [N, J]
    to_full = (1.0 - gain @ size) / n_agents  # [N]: d phi / d v(N)
    matrix = np.zeros((len(masks), n_agents))
    matrix[2:] = gain.T
    matrix[1] = to_full
    matrix[0] = -gain.sum(axis=1) - to_full
    return torch.from_numpy(matrix)


@register_estimator(
    NAME,
    KernelShapConfig,
    lambda cfg, n: budget_needs(cfg, _design(n, kernel_budget(cfg, n), cfg.seed)[0]),
    granularity="multi-agent",
    family="game-theoretic (sampled Shapley: paired KernelSHAP with leverage sampling)",
)
def kernelshap(batch: CreditBatch, cfg: KernelShapConfig) -> Credit:
    """credit [B, N] = the regression's phi; advantage [B, T] = agent_norm(phi) (or phi)."""
    n_agents = batch.n_agents
    budget = kernel_budget(cfg, n_agents)
    masks, _ = _design(n_agents, budget, cfg.seed)
    values = design_values(batch, masks, NAME)
    phi = values @ kernel_matrix(n_agents, budget, cfg.seed).to(values.device, values.dtype)
    return budgeted_credit(batch, cfg, phi, {f"{NAME}/evals": float(len(masks))})
