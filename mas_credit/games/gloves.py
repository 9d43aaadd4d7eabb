"""gloves_v0 — the glove game at any team size: two skills that score only in pairs.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..256), simultaneous (ParallelEnv), one move.
  Task: the non-lazy agents are split (at random per task) into left-glove and right-glove holders,
    floor(m/2) left and the rest right; each holds a private digit.
  Observation: {"text": ...}: which glove the agent holds and its digit.
  Action: text; read as a digit, as in vault_v0.
  Reward: the number of pairs the agents that reported their digit can form, min(left right,
    right right), over the most possible, floor(m/2). Components: `correct`, `format`, `parsed`.
  Null action / counterfactual: an absent agent brings no glove. v(S) = min(#left, #right among
    the agents of S that reported right) / floor(m/2).
  Credit structure: glove (complementary pairs). Exact Shapley (Shapley 1953's glove game): with L
    left and R right holders right, a left holder's marginal contribution is 1 exactly when fewer
    left than right gloves precede it, so phi_left = (1/n) sum_s sum_{a < s - a} C(L-1, a) C(R, s-a)
    / C(n-1, s) (n = L + R), and the same with the sides swapped; the scarce side gets more. O(n^2).
  Version history: v0 first release.
"""

from __future__ import annotations

import math

import numpy as np

from mas_credit.games.crew import CrewGame


class GlovesEnv(CrewGame):
    name = "gloves_v0"
    credit_structure = "glove"
    premise = "Gloves count only in pairs of a left and a right one, brought by agents who report their digit."

    def _rules(self, active, rng):
        side = np.full(self.n_agents, "", dtype=object)
        order = rng.permutation(active)
        half = len(active) // 2
        side[order[:half]] = "left"
        side[order[half:]] = "right"
        return {"side": [str(s) for s in side], "pairs": max(1, half)}

    def _role(self, task, agent):
        side = task["side"][agent]
        return f"You hold a {side} glove." if side else "You hold no glove."

    def _sides(self, task):
        side = np.array(task["side"])
        return side == "left", side == "right"

    def _value(self, task, present, outcome):
        left, right = self._sides(task)
        ok = present & outcome["correct"]
        return np.minimum(ok[:, left].sum(axis=1), ok[:, right].sum(axis=1)) / task["pairs"]

    def _shapley(self, task, outcome):
        left, right = self._sides(task)
        lefts, rights = left & outcome["correct"], right & outcome["correct"]
        n_left, n_right = int(lefts.sum()), int(rights.sum())
        phi = np.zeros(self.n_agents)
        phi[lefts] = glove_share(n_left, n_right)
        phi[rights] = glove_share(n_right, n_left)
        return phi / task["pairs"]

    def _null(self, task, outcome):
        return self._shapley(task, outcome) == 0.0


def glove_share(mine: int, theirs: int) -> float:
    """Shapley value of one holder of the side with `mine` holders, in min(#mine, #theirs): the
    chance that fewer of its own side than of the other precede it in a random order."""
    n = mine + theirs
    if mine == 0 or theirs == 0:
        return 0.0
    total = 0.0
    for s in range(n):  # s predecessors, a of them on its own side
        ways = sum(math.comb(mine - 1, a) * math.comb(theirs, s - a) for a in range(0, s + 1) if a < s - a)
        total += ways / math.comb(n - 1, s)
    return total / n
