"""What every budgeted estimator shares: the budget knobs and their checks, and the coalition
designs they draw.

A design is drawn once per (team size, budget, seed) and used for every episode of a batch, so
the estimators that are linear in v(S) become one matrix [K, N] applied to the batch's [B, K]
values (a slow loop over the same draws is their reference in the tests). A budget counts
distinct coalitions per episode, the empty and grand coalitions included; a coalition drawn twice
is evaluated once and counted once, but weighs twice where the method says so.

This module must not know any one estimator's formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mas_credit.coalitions import full_mask, mask_of, masks_to_bits
from mas_credit.estimators import Needs
from mas_credit.estimators.common import (
    CounterfactualConfig,
    agent_norm,
    check_cf,
    check_choice,
    require_coalitions,
    to_turns,
)
from mas_credit.types import Credit, CreditBatch

MAX_DRAWS_PER_EVAL = 64
"""a design stops drawing after this many draws per coalition of budget (a space nearly exhausted)"""


@dataclass
class BudgetConfig(CounterfactualConfig):
    """The knobs of a budgeted estimator."""

    budget: int = 0
    """most distinct coalitions evaluated per episode (empty and grand included); 0: budget_per_agent x N"""
    budget_per_agent: int = 10
    """k of a budget of k x N evaluations, used when budget is 0 (so one config fits every team size)"""
    seed: int = 0
    """which coalitions are drawn (the same for every episode of a batch)"""
    normalise: str = "agent"
    """advantage = agent_norm(credit) (agent) or the credit itself (none)"""

    def check_budget_knobs(self, estimator: str) -> None:
        check_cf(estimator, self)
        check_choice(estimator, "normalise", self.normalise, ("agent", "none"))
        if self.budget < 0:
            raise ValueError(
                f"estimator '{estimator}': budget must be >= 0 (0: budget_per_agent x N), got {self.budget}"
            )
        if self.budget == 0 and self.budget_per_agent < 1:
            raise ValueError(
                f"estimator '{estimator}': budget_per_agent must be >= 1 (a budget of k x N), got "
                f"{self.budget_per_agent}"
            )

    def resolved_budget(self, estimator: str, n_agents: int, minimum: int, why: str) -> int:
        """The budget for a team of n_agents, checked: at least the method's `minimum` (`why` says
        what it buys) and, given as `budget`, at most 2**N (every coalition). A budget from
        `budget_per_agent` is capped at 2**N instead, so one config fits teams of 3 and of 64 (the
        evaluations actually spent are in the estimator's `<name>/evals` metric)."""
        budget = self.budget or min(self.budget_per_agent * n_agents, 1 << n_agents)
        knob = "budget" if self.budget else f"budget_per_agent ({self.budget_per_agent} x {n_agents} agents)"
        if budget < minimum:
            raise ValueError(
                f"estimator '{estimator}': {knob} gives {budget} coalitions per episode, below its minimum {minimum} "
                f"for {n_agents} agents ({why}); raise it"
            )
        if budget > 1 << n_agents:
            raise ValueError(
                f"estimator '{estimator}': budget {budget} is more coalitions per episode than the 2**{n_agents} = "
                f"{1 << n_agents} a team of {n_agents} has; lower it, or use the exact shapley estimator"
            )
        return budget


def design_values(batch: CreditBatch, masks, estimator: str) -> torch.Tensor:
    """[B, K] the batch's values of a design's coalitions, or the one-line error naming what to fill."""
    hint = f"counterfactual.fill_needs(game, episodes, get_estimator('{estimator}').needs(cfg, N))"
    return require_coalitions(batch, masks, estimator, hint)


def budgeted_credit(batch: CreditBatch, cfg: BudgetConfig, credit: torch.Tensor, metrics: dict) -> Credit:
    """The Credit of a budgeted estimator: credit [B, N], advantage = agent_norm(credit) (or the credit,
    `normalise: none`) on each agent's turns, and its metrics."""
    agent_adv = agent_norm(credit, batch.group, batch.acted) if cfg.normalise == "agent" else credit
    return Credit(credit, to_turns(agent_adv, batch.turn_agent), metrics)


def budget_needs(cfg: BudgetConfig, masks: tuple) -> Needs:
    return Needs(
        coalitions=tuple(masks),
        kind="sampled",
        mode=cfg.counterfactual,
        k=cfg.samples,
        groups=cfg.normalise == "agent",
    )


def design_rng(estimator: str, n_agents: int, budget: int, seed: int) -> np.random.Generator:
    """The generator of one design: a pure function of its arguments (a design is reproducible)."""
    tag = int.from_bytes(estimator.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng([int(seed), n_agents, budget, tag])


def draw_of_size(rng: np.random.Generator, n_agents: int, size: int) -> int:
    """A coalition of `size` agents, uniformly among those of that size."""
    return mask_of(rng.choice(n_agents, size=size, replace=False))


def paired_draws(rng, n_agents: int, budget: int, size_probs: np.ndarray, fixed: tuple = ()) -> tuple[list, dict]:
    """Draw coalitions in complementary pairs (S, N minus S) until the next new pair would exceed
    `budget` distinct coalitions (counting the `fixed` ones, evaluated anyway). Sizes come from
    `size_probs` [N + 1] (symmetric; 0 at sizes 0 and N), members uniformly within a size.

    Returns (the distinct coalitions in order: fixed first, then each pair's S and its complement;
    {S: how many times S was drawn}, counting a draw of S's complement as a draw of it too)."""
    full = full_mask(n_agents)
    seen = dict.fromkeys(int(m) for m in fixed)
    counts: dict[int, int] = {}
    sizes = np.arange(n_agents + 1)
    draws, limit = 0, MAX_DRAWS_PER_EVAL * budget
    while draws < limit:
        draws += 1
        mask = draw_of_size(rng, n_agents, int(rng.choice(sizes, p=size_probs)))
        pair = (mask, full ^ mask)
        new = [m for m in pair if m not in seen]
        if len(seen) + len(new) > budget:
            break
        for m in pair:
            seen.setdefault(m, None)
            counts[m] = counts.get(m, 0) + 1
    return list(seen), counts


def uniform_sizes(n_agents: int) -> np.ndarray:
    """[N + 1] equal probability on every size 1..N-1: the leverage scores of the Shapley regression
    are equal across sizes (Musco & Witter 2025, arXiv 2410.01917, Sec. 4)."""
    probs = np.zeros(n_agents + 1)
    probs[1:n_agents] = 1.0 / (n_agents - 1)
    return probs


def kernel_weight(size: np.ndarray, n_agents: int) -> np.ndarray:
    """The Shapley kernel of coalitions of `size` over their probability under `uniform_sizes`
    (importance weights of the sampled regression), up to a constant: 1 / (s (N - s))."""
    size = np.asarray(size, dtype=float)
    return 1.0 / (size * (n_agents - size))


def pairs_of(masks: tuple, counts: dict, n_agents: int) -> tuple[np.ndarray, np.ndarray]:
    """A paired design (empty, grand, then each pair's coalition and its complement, as `paired_draws`
    lists them) as regression rows: x [J, N] in {-1, +1} (+1: in the pair's first coalition) and the
    kernel weights [J]; pair j's coalitions are the design's columns 2 + 2j and 3 + 2j."""
    first = list(masks[2::2])
    x = np.where(masks_to_bits(first, n_agents), 1.0, -1.0)
    size = (x > 0).sum(axis=1)
    return x, np.array([counts[m] for m in first]) * kernel_weight(size, n_agents)
