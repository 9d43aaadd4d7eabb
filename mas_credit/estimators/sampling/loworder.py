"""`loworder`: sparse low-order regression — KernelSHAP's paired fit extended with the few
three-agent interactions a game holds, so games of order <= 3 come out exact.

The issue's "sparse Moebius / low-order regression (order <= 3)", in the Walsh basis. Write a
coalition as x in {-1, +1}^N (x_i = +1: agent i present) and v as its Walsh expansion
v(x) = sum_U f_U prod_{i in U} x_i. A game whose Moebius terms have order <= k has Walsh terms of
order <= k too. The paired difference d(S) = v(S) - v(N minus S) = 2 sum_{|U| odd} f_U chi_U(x)
keeps exactly the odd-order terms, and those are all the Shapley value reads: a character chi_U is
a game with phi_i = 2/|U| for i in U when |U| is odd and 0 when it is even, so

    phi_i = g_i + (1/3) sum_{T with i, |T| = 3} g_T,   g = 2 f (the coefficients of d),
    sum_i phi_i = v(N) - v(empty) = sum_i g_i + sum_T g_T   (the constraint of the fit).

The fit: the paired design and weights of `kernelshap` (sizes uniform in 1..N-1, each draw with its
complement, weight ∝ draws / (|S| (N - |S|))); first every g_i (order 1: this alone is paired
KernelSHAP, shown equal in the tests), then a greedy search over three-agent terms among the
`screen` agents of largest |g_i| (orthogonal least squares: add the term that cuts the weighted
residual sum of squares most, keep it if it cuts it by more than `min_gain`, refit; stop at an exact
fit or `max_terms`). Order-2 terms never enter: they do not change any
Shapley value. Ours throughout (the survey names the direction, not an algorithm); the greedy search
runs per episode on the CPU. Exact on games of order <= 2 at the minimum budget 2N (as kernelshap);
exact on games of order 3 once the search finds their terms. Not unbiased.
credit = phi; advantage = agent_norm(phi) (knob `normalise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np
import torch

from mas_credit.coalitions import full_mask
from mas_credit.estimators import register_estimator
from mas_credit.estimators.common import check_choice
from mas_credit.estimators.sampling._design import (
    BudgetConfig,
    budget_needs,
    budgeted_credit,
    design_rng,
    design_values,
    paired_draws,
    pairs_of,
    uniform_sizes,
)
from mas_credit.types import Credit, CreditBatch

NAME = "loworder"
EXACT_FIT = 1e-20
"""a weighted residual below this share of the target's weighted sum of squares is an exact fit"""
TIE = 1e-9
"""candidates whose gains differ by less than this share of the residual are tied (the first wins)"""
CONSTRAINT_WEIGHT = 1e6
"""the search's constraint row weighs this many times all the pairs together"""
SPACE_FLOATS = 3e7
"""the design's precomputed search space (every triple's column) is kept up to this many floats (240 MB)"""


@dataclass
class LowOrderConfig(BudgetConfig):
    order: int = 3
    """highest interaction order fitted: 1 (paired KernelSHAP) or 3 (with three-agent terms); even
    orders never change a Shapley value, so 2 is the same as 1"""
    screen: int = 32
    """order 3: the three-agent terms searched are those among this many agents of largest |g_i|"""
    max_terms: int = 24
    """order 3: most three-agent terms an episode's fit may hold (a game with more is not sparse, and
    each term costs a step of the search)"""
    min_gain: float = 0.05
    """order 3: a term is kept only if it cuts the weighted residual sum of squares by this share"""

    def check(self):
        self.check_budget_knobs(NAME)
        check_choice(NAME, "order", self.order, (1, 2, 3))
        if self.screen < 3 or self.max_terms < 0 or not 0.0 <= self.min_gain < 1.0:
            raise ValueError(
                f"estimator '{NAME}': screen must be >= 3, max_terms >= 0 and min_gain in [0, 1), got screen="
                f"{self.screen}, max_terms={self.max_terms}, min_gain={self.min_gain}"
            )


def loworder_budget(cfg: LowOrderConfig, n_agents: int) -> int:
    return cfg.resolved_budget(
        NAME, n_agents, 2 * n_agents, "the empty and grand coalitions and N - 1 pairs for the N first-order terms"
    )


@lru_cache(maxsize=32)
def _design(n_agents: int, budget: int, seed: int) -> tuple[tuple, dict]:
    rng = design_rng(NAME, n_agents, budget, seed)
    masks, counts = paired_draws(rng, n_agents, budget, uniform_sizes(n_agents), fixed=(0, full_mask(n_agents)))
    return tuple(masks), counts


@lru_cache(maxsize=4)
def _space(n_agents: int, budget: int, seed: int) -> dict:
    return search_space(*_pairs(n_agents, budget, seed))


@lru_cache(maxsize=32)
def _pairs(n_agents: int, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    masks, counts = _design(n_agents, budget, seed)
    return pairs_of(masks, counts, n_agents)


def constrained_fit(features: np.ndarray, target: np.ndarray, weight: np.ndarray, total: float) -> np.ndarray:
    """argmin_theta sum_j w_j (target_j - features_j . theta)^2 subject to sum(theta) = total (KKT, least
    squares so a rank-deficient design still gets the minimum-norm solution)."""
    p = features.shape[1]
    fw = features.T * weight
    kkt = np.zeros((p + 1, p + 1))
    kkt[:p, :p] = fw @ features
    kkt[:p, p] = kkt[p, :p] = 1.0
    rhs = np.concatenate([fw @ target, [total]])
    return np.linalg.lstsq(kkt, rhs, rcond=1e-12)[0][:p]


def term_limit(cfg: LowOrderConfig, n_pairs: int, n_agents: int) -> int:
    """Most three-agent terms a fit may hold: `max_terms`, and at most half the pairs left after the
    first-order terms, so the fit stays overdetermined (a saturated fit interpolates any game)."""
    return min(cfg.max_terms, max(0, (n_pairs - n_agents - 1) // 2))


def colex_rank(triples: np.ndarray) -> np.ndarray:
    """[C] the position of each (a < b < c) among all triples listed by c, then b, then a."""
    a, b, c = triples[:, 0], triples[:, 1], triples[:, 2]
    return c * (c - 1) * (c - 2) // 6 + b * (b - 1) // 2 + a


def search_space(x: np.ndarray, weight: np.ndarray) -> dict:
    """What the search needs that depends on the design alone: the weighted rows' square roots (the
    constraint's heavy row last), an orthonormal basis of the first-order terms, and, where they fit in
    SPACE_FLOATS, every three-agent term's column orthogonal to that basis and its squared norm (listed
    as `colex_rank` numbers them), so each episode only picks its candidates' columns."""
    n = x.shape[1]
    root = np.sqrt(np.concatenate([weight, [CONSTRAINT_WEIGHT * weight.sum()]]))  # [J + 1]
    basis, _ = np.linalg.qr(np.vstack([x, np.ones(n)]) * root[:, None])  # [J + 1, N], orthonormal
    space = {"root": root, "basis": basis, "chi": None}
    count = n * (n - 1) * (n - 2) // 6
    if n >= 3 and count * len(root) <= SPACE_FLOATS:
        c = np.concatenate([np.full(k * (k - 1) // 2, k) for k in range(2, n)])  # colex order: by c, b, a
        b = np.concatenate([np.repeat(np.arange(1, k), np.arange(1, k)) for k in range(2, n)])
        a = np.concatenate([np.concatenate([np.arange(j) for j in range(1, k)]) for k in range(2, n)])
        chi = np.vstack([x[:, a] * x[:, b] * x[:, c], np.ones(count)]) * root[:, None]
        chi -= basis @ (basis.T @ chi)
        space.update(chi=chi, norm2=np.einsum("jc,jc->c", chi, chi))
    return space


def fit_episode(x, weight, d, total, cfg: LowOrderConfig, space: dict | None = None) -> tuple[np.ndarray, int]:
    """phi [N] of one episode from its paired differences d [J] and v(N) - v(empty); and how many
    three-agent terms its fit kept.

    The search is orthogonal least squares: each step adds the candidate that cuts the weighted sum
    of squares most (its correlation with the residual over its norm orthogonal to the terms held),
    which stays reliable where the design makes terms correlated (a plain correlation score does
    not). The constraint joins the search as a heavy row at x = all ones (the grand coalition: every
    term there is 1, so the row reads sum(theta) = v(N) - v(empty)); the final fit holds it exactly."""
    n = x.shape[1]
    theta = constrained_fit(x, d, weight, total)
    if cfg.order < 3 or cfg.max_terms == 0 or n < 3:
        return theta, 0
    space = search_space(x, weight) if space is None else space
    target = np.concatenate([d, [total]]) * space["root"]
    sst = float(weight @ d**2)  # the pairs' own weighted sum of squares (the scale of every threshold)
    residual = target - space["basis"] @ (space["basis"].T @ target)
    sse = float(residual @ residual)
    if sse <= EXACT_FIT * max(sst, 1e-300):
        return theta, 0
    screened = sorted(np.argsort(-np.abs(theta), kind="stable")[: min(cfg.screen, n)].tolist())
    triples = np.array(list(combinations(screened, 3)))  # [C, 3], in the order combinations lists them
    if space.get("chi") is not None:  # every triple's column was made orthogonal once for the design
        columns = colex_rank(triples)
        chi, norm2 = space["chi"][:, columns], space["norm2"][columns].copy()
    else:
        chi = np.vstack([x[:, triples[:, 0]] * x[:, triples[:, 1]] * x[:, triples[:, 2]], np.ones(len(triples))])
        chi *= space["root"][:, None]  # [J + 1, C]
        chi -= space["basis"] @ (space["basis"].T @ chi)  # each candidate orthogonal to the terms held
        norm2 = np.einsum("jc,jc->c", chi, chi)
    chosen: list[int] = []
    held = np.zeros((chi.shape[0], 0))  # the chosen terms' orthonormal columns
    limit = term_limit(cfg, x.shape[0], n)
    while len(chosen) < limit:
        usable = norm2 > 1e-9 * sst
        gain = np.where(usable, (chi.T @ residual) ** 2 / np.where(usable, norm2, 1.0), -1.0)
        gain[chosen] = -1.0
        best = int(np.flatnonzero(gain >= gain.max() - TIE * sse)[0])  # near-ties: the first candidate
        if gain[best] < cfg.min_gain * sse:
            break
        chosen.append(best)
        # chi stays as it was: the residual is orthogonal to every term held, so chi's correlations with
        # it are those of the columns made orthogonal to them, and so are q's with chi (q is orthogonal
        # to the earlier terms); only the chosen column and the norms need the terms held taken out
        column = chi[:, best] - (held @ (held.T @ chi[:, best]) if held.shape[1] else 0.0)
        q = column / np.sqrt(norm2[best])
        residual -= q * (q @ residual)
        sse = float(residual @ residual)
        norm2 = np.maximum(norm2 - (q @ chi) ** 2, 0.0)
        held = np.column_stack([held, q])
        if sse <= EXACT_FIT * max(sst, 1e-300):
            break
    if not chosen:
        return theta, 0
    features = np.column_stack([x, *(x[:, t[0]] * x[:, t[1]] * x[:, t[2]] for t in triples[chosen])])
    theta = constrained_fit(features, d, weight, total)
    phi = theta[:n].copy()
    for t, g in zip(triples[chosen], theta[n:]):
        phi[t] += g / 3.0
    return phi, len(chosen)


@register_estimator(
    NAME,
    LowOrderConfig,
    lambda cfg, n: budget_needs(cfg, _design(n, loworder_budget(cfg, n), cfg.seed)[0]),
    granularity="multi-agent",
    family="game-theoretic (sampled Shapley: sparse low-order regression)",
)
def loworder(batch: CreditBatch, cfg: LowOrderConfig) -> Credit:
    """credit [B, N] = phi of each episode's sparse low-order fit; advantage [B, T] = agent_norm(phi)."""
    n_agents = batch.n_agents
    budget = loworder_budget(cfg, n_agents)
    masks, _ = _design(n_agents, budget, cfg.seed)
    values = design_values(batch, masks, NAME)
    x, weight = _pairs(n_agents, budget, cfg.seed)
    table = values.detach().cpu().numpy()
    diffs = table[:, 2::2] - table[:, 3::2]  # [B, J]
    totals = table[:, 1] - table[:, 0]
    phi, terms = np.zeros((batch.batch_size, n_agents)), []
    space = _space(n_agents, budget, cfg.seed) if cfg.order == 3 else None
    for b in range(batch.batch_size):
        phi[b], kept = fit_episode(x, weight, diffs[b], float(totals[b]), cfg, space)
        terms.append(kept)
    phi = torch.from_numpy(phi).to(values.device, values.dtype)
    metrics = {f"{NAME}/evals": float(len(masks)), f"{NAME}/terms": float(np.mean(terms))}
    return budgeted_credit(batch, cfg, phi, metrics)
