"""airport_v0 — the airport game at any team size: the team's range is its farthest correct reach.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..256), simultaneous (ParallelEnv), one move.
  Task: each non-lazy agent's plane needs a runway of length l_i in 1..9 (drawn per task) and holds a
    private digit; a plane whose pilot reports its digit is cleared.
  Observation: {"text": ...}: the runway the agent's plane needs (in words) and its digit.
  Action: text; read as a digit, as in vault_v0.
  Reward: the longest runway among the cleared planes over the longest any plane needs
    (max_i l_i over the agents that reported right, / max_i l_i; 0 if none). Components:
    `correct`, `format`, `parsed` per agent.
  Null action / counterfactual: an absent agent's plane is not cleared. v(S) = max of l_i over the
    agents of S that reported right, over the longest.
  Credit structure: airport (Littlechild & Owen 1973; the runway a coalition needs is its longest).
    Exact Shapley by the sorting formula: with the n cleared planes sorted by runway x_(1) <= ... <=
    x_(n) and D_k = x_(k) - x_(k-1) (x_(0) = 0), v = sum_k D_k [S holds one of the planes ranked k..n],
    an OR game of the n - k + 1 longest for each k, so plane (p) gets sum_{k <= p} D_k / (n - k + 1):
    every cleared plane shares the first stretch, only the longest the last. O(n log n).
  Version history: v0 first release.
"""

from __future__ import annotations

import numpy as np

from mas_credit.games.crew import CrewGame, in_words


class AirportEnv(CrewGame):
    name = "airport_v0"
    credit_structure = "airport"
    premise = (
        "The runway is built as long as the longest plane it clears needs; a plane is cleared if its pilot "
        "reports its digit."
    )

    def _rules(self, active, rng):
        runway = np.zeros(self.n_agents, dtype=int)
        runway[active] = rng.integers(1, 10, size=len(active))
        return {"runway": [int(r) for r in runway]}

    def _role(self, task, agent):
        r = task["runway"][agent]
        return f"Your plane needs a runway of length {in_words(r)}." if r else "You have no plane."

    def _value(self, task, present, outcome):
        runway = np.array(task["runway"], dtype=float)
        cleared = present & outcome["correct"]
        return np.where(cleared, runway, 0.0).max(axis=1) / runway.max()

    def _shapley(self, task, outcome):
        runway = np.array(task["runway"], dtype=float)
        return max_game_shapley(runway, outcome["correct"]) / runway.max()

    def _null(self, task, outcome):
        return ~outcome["correct"]


def max_game_shapley(x: np.ndarray, players: np.ndarray) -> np.ndarray:
    """[N] Shapley value of v(S) = max_{i in S, players} x_i (0 for none), x >= 0; non-players 0."""
    phi = np.zeros(len(x))
    idx = np.flatnonzero(players)
    n = len(idx)
    if n == 0:
        return phi
    order = idx[np.argsort(x[idx], kind="stable")]
    steps = np.diff(np.concatenate([[0.0], x[order]]))  # D_k
    phi[order] = np.cumsum(steps / (n - np.arange(n)))  # rank p: sum_{k <= p} D_k / (n - k + 1)
    return phi
