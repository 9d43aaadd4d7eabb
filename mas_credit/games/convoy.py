"""convoy_v0 — MIN crew game at any team size: the convoy moves at its slowest truck's pace.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..256), simultaneous (ParallelEnv), one move.
  Task: each non-lazy agent drives a truck and holds a private digit; its truck's pace is how
    close the digit it reports is to the true one: q_i = 1 - |reported - digit| / 10 (1 when right,
    down to 0.1). A truck whose driver reports nothing readable stays home; lazy agents have none.
  Observation: {"text": ...}: the agent's digit (as in vault_v0).
  Action: text; read as a digit, as in vault_v0.
  Reward: the slowest pace among the trucks that left (min_i q_i over the agents whose answer was
    read), 0 if none left; 1 when every driver is right. Components: `correct`, `format`, `parsed`.
  Null action / counterfactual: an absent agent's truck stays home, so it does not slow the convoy.
    v(S) = min of q_i over the agents of S whose answer was read (0 for none).
  Credit structure: MIN (weakest link). Exact Shapley by the sorting formula: with the n trucks
    that left sorted by pace x_(1) <= ... <= x_(n) and D_k = x_(k) - x_(k-1) (x_(0) = 0),
    v = sum_k D_k u_k with u_k(S) = [S non-empty and inside the trucks ranked k..n]; u_k pays 1/n
    to each truck ranked k or later and -m_k / (n (n - m_k)) to each earlier one (m_k = n - k + 1),
    so a slow truck gets negative credit and the shares sum to v(N). O(n log n).
  Version history: v0 first release.
"""

from __future__ import annotations

import numpy as np

from mas_credit.games.crew import CrewGame


class ConvoyEnv(CrewGame):
    name = "convoy_v0"
    credit_structure = "MIN"
    premise = (
        "Each agent drives a truck whose pace is how close the digit it reports is to its true digit; "
        "the convoy moves at the pace of its slowest truck."
    )

    def _role(self, task, agent):
        return "Your truck is fuelled." if self.active[agent] else "Your truck is in the repair shop."

    def _value(self, task, present, outcome):
        went = present & outcome["went"]
        paces = np.where(went, outcome["quality"], np.inf).min(axis=1)
        return np.where(went.any(axis=1), paces, 0.0)

    def _shapley(self, task, outcome):
        return min_game_shapley(outcome["quality"], outcome["went"])

    def _null(self, task, outcome):
        return ~outcome["went"]


def min_game_shapley(x: np.ndarray, players: np.ndarray) -> np.ndarray:
    """[N] Shapley value of v(S) = min_{i in S, players} x_i (0 for an S with no player), x >= 0;
    non-players get 0 (the sorting formula of the module docstring)."""
    phi = np.zeros(len(x))
    idx = np.flatnonzero(players)
    n = len(idx)
    if n == 0:
        return phi
    order = idx[np.argsort(x[idx], kind="stable")]
    sorted_x = x[order]
    steps = np.diff(np.concatenate([[0.0], sorted_x]))  # D_k, k = 1..n
    k = np.arange(1, n + 1)
    later = n - k + 1  # m_k: the trucks ranked k..n
    # rank p gets sum_{k <= p} D_k / n - sum_{k > p} D_k m_k / (n (n - m_k)) = x_(p) / n - tail(p)
    penalty = np.where(later < n, steps * later / (n * np.maximum(n - later, 1)), 0.0)
    tail = np.concatenate([np.cumsum(penalty[::-1])[::-1][1:], [0.0]])  # sum over k > p
    phi[order] = sorted_x / n - tail
    return phi
