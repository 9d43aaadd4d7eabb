"""`shapley`: exact or sampled Shapley value of v(S), the ground truth (Shapley 1953).

Exact is what studies score against; sampled (Castro et al. 2009, permutations with
antithetic pairs) is for when 2**N coalitions cost too much. credit = phi;
advantage = agent_norm(phi) on each agent's turns (knob `normalise`). docs/estimators.md,
"Shared math" and "Extras".

Exact, as one matrix product:

phi_i = sum_{S not containing i} |S|! (N-|S|-1)! / N! * (v(S u {i}) - v(S))
      = V @ W,  V [B, 2**N] (bit i of the column index = agent i present),
        W [2**N, N]: W[S, i] = w(|S|-1) if i in S else -w(|S|), w(k) = k!(N-k-1)!/N!.
Efficiency: sum_i phi_i = v(N) - v(empty). (Shapley 1953; docs/estimators.md, "Shared math".)

`exact_shapley` contracts the marginal contributions instead of V with W:
phi[b, i] = sum_k w(|S_k|) * (V[b, S_k | i] - V[b, S_k]) over the 2**(N-1) coalitions S_k
without i — the same sum, but a null player's differences are exactly 0, so its
credit is exactly 0 rather than a rounding residue of +-1e-17. Per agent it is one
matrix-vector product, [B, 2**(N-1)] marginal differences (strided views of V paired
up, no gather) times the weights w(|S|); tests check it equals V @ W
(`shapley_weights`) and a subset-sum loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from mas_credit.coalitions import check_enumerable
from mas_credit.estimators import Needs, register_estimator
from mas_credit.estimators.common import (
    CounterfactualConfig,
    agent_norm,
    check_cf,
    check_choice,
    require_coalitions,
    to_turns,
)
from mas_credit.types import Credit, CreditBatch


@lru_cache(maxsize=32)
def _weights_cpu(n_agents: int) -> torch.Tensor:
    masks = torch.arange(1 << n_agents)
    present = ((masks[:, None] >> torch.arange(n_agents)) & 1).bool()  # [2**N, N]
    size = present.sum(dim=1, keepdim=True).expand(-1, n_agents)  # [2**N, N] |S|
    w = torch.tensor(
        [math.factorial(k) * math.factorial(n_agents - k - 1) / math.factorial(n_agents) for k in range(n_agents)]
        + [0.0],
        dtype=torch.float64,
    )  # w(N) unused, padded
    return torch.where(present, w[(size - 1).clamp(min=0)], -w[size.clamp(max=n_agents - 1)])


def shapley_weights(n_agents: int, device=None, dtype=torch.float64) -> torch.Tensor:
    """W [2**N, N] such that phi = V @ W."""
    return _weights_cpu(n_agents).to(device=device, dtype=dtype)


@lru_cache(maxsize=32)
def _marginal_weights_cpu(n_agents: int) -> torch.Tensor:
    """[N, 2**(N-1)]: row i holds w(|S|) for the coalitions S without agent i, in the
    order a view [B, 2**(N-1-i), 2, 2**i] of the table lists them (bits above i, then below)."""
    w = torch.tensor(
        [math.factorial(k) * math.factorial(n_agents - k - 1) / math.factorial(n_agents) for k in range(n_agents)],
        dtype=torch.float64,
    )
    rows = []
    for i in range(n_agents):
        high = torch.arange(1 << (n_agents - 1 - i))[:, None] << (i + 1)
        low = torch.arange(1 << i)[None, :]
        masks = (high | low).reshape(-1)  # S without i
        size = ((masks[:, None] >> torch.arange(n_agents)) & 1).sum(dim=1)
        rows.append(w[size])
    return torch.stack(rows)


def coalition_halves(values: torch.Tensor, agent: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Strided views [B, 2**(N-1-i), 2**i] of v(S) and v(S u {i}) over the coalitions S
    without agent i (bit i splits the table into the two halves; no copy)."""
    n_agents = values.shape[1].bit_length() - 1
    pairs = values.view(values.shape[0], 1 << (n_agents - 1 - agent), 2, 1 << agent)
    return pairs[:, :, 0, :], pairs[:, :, 1, :]


def exact_shapley(values: torch.Tensor) -> torch.Tensor:
    """values [B, 2**N] (every coalition evaluated) -> Shapley values [B, N]."""
    if values.dim() != 2 or values.shape[1] < 2 or values.shape[1] & (values.shape[1] - 1):
        raise ValueError(f"exact_shapley needs values of shape [B, 2**N], got {tuple(values.shape)}")
    missing = torch.isnan(values)
    if missing.any():
        b = int(missing.any(dim=1).nonzero()[0])
        raise ValueError(
            f"exact_shapley needs all 2**N coalition values, but episode {b} has "
            f"{int(missing[b].sum())} unevaluated; fill them with fill_coalitions(game, episodes, masks='all')"
        )
    batch_size, n_agents = values.shape[0], values.shape[1].bit_length() - 1
    values = values.contiguous()
    weight = _marginal_weights_cpu(n_agents).to(device=values.device, dtype=values.dtype)  # [N, 2**(N-1)]
    marginal = torch.empty((batch_size, 1 << (n_agents - 1)), dtype=values.dtype, device=values.device)
    phi = torch.empty((n_agents, batch_size), dtype=values.dtype, device=values.device)
    for i in range(n_agents):
        without, with_ = coalition_halves(values, i)
        torch.sub(with_, without, out=marginal.view(without.shape))  # one reused buffer
        torch.mv(marginal, weight[i], out=phi[i])
    return phi.T.contiguous()


# -- sampled Shapley ---------------------------------------------------------------------
MAX_PERMUTATIONS = 4096


def _prefix_mask(perm, length: int) -> int:
    return sum(1 << agent for agent in perm[:length])


@lru_cache(maxsize=64)
def sample_permutations(n_agents: int, budget: int, seed: int = 0, antithetic: bool = True):
    """Permutations for sampled Shapley, drawn until the coalitions they visit would
    exceed `budget` distinct evaluations per episode.

    Each permutation visits its N+1 prefixes (empty .. all). With `antithetic`, a
    permutation is followed by its reverse (Castro 2009's variance reduction: the reverse
    sees each agent with the complementary predecessors); when the pair does not fit the
    budget the permutation alone is tried. A candidate whose new coalitions do not fit
    is skipped; drawing stops after 64 misses in a row or at
    MAX_PERMUTATIONS. Returns (permutations [P, N] as a tuple of tuples, the sorted
    tuple of coalition masks they need).
    """
    if budget < n_agents + 1:
        raise ValueError(
            f"sampled Shapley needs budget >= N+1 = {n_agents + 1} (one permutation's coalitions), got {budget}"
        )
    rng = np.random.default_rng([int(seed), n_agents, 0x5A])
    perms, masks, misses = [], set(), 0
    while misses < 64 and len(perms) < MAX_PERMUTATIONS:
        first = [int(a) for a in rng.permutation(n_agents)]
        for candidate in ([first, first[::-1]], [first]) if antithetic else ([first],):
            new = masks | {_prefix_mask(perm, j) for perm in candidate for j in range(n_agents + 1)}
            if len(new) <= budget:
                perms.extend(candidate)
                masks, misses = new, 0
                break
        else:
            misses += 1
    return tuple(tuple(p) for p in perms), tuple(sorted(masks))


@lru_cache(maxsize=64)
def _permutation_index_cpu(perms: tuple, keys: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """pre[p, i] = column of the coalition before agent i in permutation p; post[p, i] = the column
    of pre | {i}. Columns are the masks themselves (a dense table) or their positions in `keys`."""
    n_agents = len(perms[0])
    column = None if keys is None else {m: k for k, m in enumerate(keys)}
    pre = torch.zeros((len(perms), n_agents), dtype=torch.long)
    post = torch.zeros((len(perms), n_agents), dtype=torch.long)
    for p, perm in enumerate(perms):
        mask = 0
        for agent in perm:
            pre[p, agent] = mask if column is None else column[mask]
            mask |= 1 << agent
            post[p, agent] = mask if column is None else column[mask]
    return pre, post


def sampled_shapley(values: torch.Tensor, perms, keys: tuple | None = None) -> torch.Tensor:
    """values [B, 2**N] (at least the permutations' coalitions), or [B, K] the values of the
    coalitions `keys` -> [B, N]: the mean over permutations of each agent's marginal contribution
    to its predecessors. Efficient (sums to v(N) - v(empty)) for any set of permutations."""
    pre, post = (t.to(values.device) for t in _permutation_index_cpu(tuple(tuple(p) for p in perms), keys))
    marginal = values[:, post] - values[:, pre]  # [B, P, N]
    return marginal.mean(dim=1)


def shapley_values(
    batch: CreditBatch, method: str, budget: int, seed: int, antithetic: bool, estimator: str
) -> torch.Tensor:
    """phi [B, N] from the batch's coalition values (dense or sparse): exact when every coalition
    fits the budget (or method is exact), else sampled."""
    n_agents = batch.n_agents
    if method == "exact" or (1 << n_agents) <= budget:
        check_enumerable(n_agents, f"estimator '{estimator}' with method: exact")
        values = batch.coalition_values if batch.is_dense else batch.values_at(range(1 << n_agents))
        if torch.isnan(values).any():
            require_coalitions(batch, range(1 << n_agents), estimator, "fill_coalitions(game, episodes, masks='all')")
        return exact_shapley(values)
    perms, needed = sample_permutations(n_agents, budget, seed, antithetic)
    values = require_coalitions(
        batch,
        needed,
        estimator,
        f"fill_coalitions(game, episodes, masks=estimator.needs(cfg, {n_agents}).coalitions)",
    )
    return sampled_shapley(values, perms, needed)


def shapley_masks(method: str, budget: int, seed: int, antithetic: bool, n_agents: int) -> tuple[tuple, str]:
    """The coalitions `shapley_values` will read, and their kind (all | sampled)."""
    if method == "exact" or (1 << n_agents) <= budget:
        check_enumerable(n_agents, f"Shapley with method: {method}")
        return tuple(range(1 << n_agents)), "all"
    return sample_permutations(n_agents, budget, seed, antithetic)[1], "sampled"


@dataclass
class ShapleyKnobs(CounterfactualConfig):
    """How phi is computed (shared by `shapley` and `sharp`)."""

    method: str = "exact"
    """exact (every coalition: 2**N evaluations) | sampled (permutations within `budget`)"""
    budget: int = 64
    """sampled: most distinct coalitions evaluated per episode; budget >= 2**N gives exact"""
    budget_per_agent: int = 0
    """sampled: when > 0, the budget is this many evaluations per player (k x N), so one config fits every
    team size; 0: `budget`"""
    antithetic: bool = True
    """sampled: each permutation is followed by its reverse"""
    seed: int = 0
    """sampled: which permutations (the same for every episode of a batch)"""

    def check_shapley(self, estimator: str):
        check_choice(estimator, "method", self.method, ("exact", "sampled"))
        check_cf(estimator, self)
        if self.budget_per_agent < 0:
            raise ValueError(
                f"estimator '{estimator}': budget_per_agent must be >= 0 (0: use budget), got {self.budget_per_agent}"
            )

    def budget_for(self, n_players: int) -> int:
        """The budget of coalitions per episode for n_players players."""
        return self.budget_per_agent * n_players if self.budget_per_agent > 0 else self.budget


def shapley_needs(cfg: ShapleyKnobs, n_agents: int) -> Needs:
    masks, kind = shapley_masks(cfg.method, cfg.budget_for(n_agents), cfg.seed, cfg.antithetic, n_agents)
    grouped = getattr(cfg, "normalise", "agent") == "agent"  # sharp always normalises per agent
    return Needs(coalitions=masks, kind=kind, mode=cfg.counterfactual, k=cfg.samples, groups=grouped)


@dataclass
class ShapleyConfig(ShapleyKnobs):
    normalise: str = "agent"
    """advantage = agent_norm(phi) (agent) or phi itself (none)"""

    def check(self):
        self.check_shapley("shapley")
        check_choice("shapley", "normalise", self.normalise, ("agent", "none"))


@register_estimator(
    "shapley",
    ShapleyConfig,
    shapley_needs,
    granularity="multi-agent",
    family="game-theoretic (exact or sampled Shapley)",
)
def shapley_estimator(batch: CreditBatch, cfg: ShapleyConfig) -> Credit:
    """credit [B, N] = phi; advantage [B, T] = agent_norm(phi) (or phi) on each agent's turns."""
    budget = cfg.budget_for(batch.n_agents)
    phi = shapley_values(batch, cfg.method, budget, cfg.seed, cfg.antithetic, "shapley")
    agent_adv = agent_norm(phi, batch.group, batch.acted) if cfg.normalise == "agent" else phi
    exact = cfg.method == "exact" or (1 << batch.n_agents) <= budget
    return Credit(credit=phi, advantage=to_turns(agent_adv, batch.turn_agent), metrics={"shapley/exact": float(exact)})
