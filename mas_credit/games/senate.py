"""senate_v0 — weighted voting at any team size: right votes must carry a weighted quota.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..256), simultaneous (ParallelEnv), one move.
  Parameters: `max_weight` (1..9, default 5): each non-lazy agent's voting weight is drawn in
    1..max_weight per task; `quota` (in (0, 1), default 0.5): the motion carries when the right
    votes' weight exceeds quota x the total weight.
  Task: weights and a private digit per agent (the agent's "vote" is reporting it).
  Observation: {"text": ...}: the agent's weight and the quota (in words) and its digit.
  Action: text; read as a digit, as in vault_v0.
  Reward: 1 if the weight of the agents that reported their digit exceeds quota x W (W = the
    total weight of the non-lazy agents), else 0. Components: `correct`, `format`, `parsed`.
  Null action / counterfactual: an absent agent casts no vote. v(S) = 1 iff the agents of S that
    reported right carry the quota.
  Credit structure: threshold (weighted voting). Exact Shapley is the Shapley-Shubik index of the
    right voters: for agent i, the share of orderings in which its weight turns the quota, computed
    by a pseudo-polynomial dynamic programme over (number of voters, weight) per weight class,
    O(m^2 W) for m right voters (Shapley & Shubik 1954; Matsui & Matsui 2000). Agents that are
    never pivotal get 0.
  Version history: v0 first release.
"""

from __future__ import annotations

import math

import numpy as np

from mas_credit.games.base import GameParamError
from mas_credit.games.crew import CrewGame, in_words


class SenateEnv(CrewGame):
    name = "senate_v0"
    credit_structure = "threshold"
    premise = "The motion carries if the voters who report their digit hold more than the quota of the weight."

    def __init__(self, *args, max_weight: int = 5, quota: float = 0.5, **kwargs):
        if not isinstance(max_weight, int) or isinstance(max_weight, bool) or not 1 <= max_weight <= 9:
            raise GameParamError(f"{self.name}: max_weight must be an integer in [1, 9], got {max_weight!r}")
        if isinstance(quota, bool) or not isinstance(quota, (int, float)) or not 0.0 < float(quota) < 1.0:
            raise GameParamError(
                f"{self.name}: quota must be a number in (0, 1) (a share of the weight), got {quota!r}"
            )
        self.max_weight, self.quota = max_weight, float(quota)
        super().__init__(*args, **kwargs)

    def _rules(self, active, rng):
        weights = np.zeros(self.n_agents, dtype=int)
        weights[active] = rng.integers(1, self.max_weight + 1, size=len(active))
        total = int(weights.sum())
        return {"weights": [int(w) for w in weights], "needed": math.floor(self.quota * total) + 1}

    def _role(self, task, agent):
        w = task["weights"][agent]
        return (
            f"Your vote weighs {in_words(w)}; the motion needs more than {round(100 * self.quota)} percent of the "
            f"weight."
            if w
            else "You hold no vote."
        )

    def _value(self, task, present, outcome):
        w = np.array(task["weights"])
        return ((present & outcome["correct"]) @ w >= task["needed"]).astype(float)

    def _shapley(self, task, outcome):
        w = np.array(task["weights"])
        right = np.flatnonzero(outcome["correct"] & (w > 0))
        phi = np.zeros(self.n_agents)
        phi[right] = shapley_shubik(w[right], task["needed"])
        return phi

    def _null(self, task, outcome):
        return self._shapley(task, outcome) == 0.0


def shapley_shubik(weights: np.ndarray, needed: int) -> np.ndarray:
    """[m] Shapley value of the weighted voting game [needed; weights] (v(S) = 1 iff w(S) >= needed).

    Agents of equal weight are symmetric, so one dynamic programme per weight class suffices: counts
    [s, t] of coalitions of the other m - 1 voters with s members and weight t, built class by class
    (k voters of weight w contribute C(k, j) ways to add j members and j * w weight); voter i is
    pivotal for a coalition S of the others when needed - w_i <= w(S) < needed, with the Shapley
    weight s! (m - 1 - s)! / m! = 1 / (m C(m - 1, s)). Counts are sums of positives (no
    cancellation), exact to float64 rounding for the team sizes here."""
    weights = np.asarray(weights, dtype=int)
    m = len(weights)
    phi = np.zeros(m)
    if m == 0:
        return phi
    classes = {int(w): int(c) for w, c in zip(*np.unique(weights, return_counts=True))}
    top = needed  # weights at or above `needed` need no column of their own
    size_weight = np.array([1.0 / (m * math.comb(m - 1, s)) for s in range(m)])
    for w_i in classes:
        counts = np.zeros((m, top + 1))  # [s, min(t, top)]
        counts[0, 0] = 1.0
        for w, k in classes.items():
            k = k - (w == w_i)  # the others: one voter of i's class is i itself
            if k == 0:
                continue
            ways = np.array([math.comb(k, j) for j in range(k + 1)], dtype=float)
            new = np.zeros_like(counts)
            for j in range(min(k, m - 1) + 1):  # add j voters of weight w: s -> s + j, t -> min(t + j w, top)
                gain = j * w
                if gain < top:
                    new[j:, gain:top] += ways[j] * counts[: m - j, : top - gain]
                new[j:, top] += ways[j] * counts[: m - j, max(0, top - gain) :].sum(axis=1)
            counts = new
        lo = max(0, needed - w_i)
        pivotal = counts[:, lo:needed].sum(axis=1) if lo < needed else np.zeros(m)  # [s]
        phi[weights == w_i] = float(pivotal @ size_weight)
    return phi
