"""harvest_v0 — additive crew game at any team size: each picker's basket adds its own weight.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..256), simultaneous (ParallelEnv), one move.
  Task: each non-lazy agent holds a private digit and a basket of weight w_i in {1, 2, 3}
    (drawn per task); lazy agents hold no basket.
  Observation: {"text": ...}: the agent's basket weight (in words) and its digit, stated directly
    (difficulty 1), in words (2), or as a small sum (3).
  Action: text; read as a digit, as in vault_v0 ("DIGIT: 7", else leniently).
  Reward: (sum of w_i over the agents that reported their digit) / (sum of all w_i).
    Components: `correct`, `format`, `parsed` per agent.
  Null action / counterfactual: an absent agent's basket stays out. v(S) = sum of w_i over the
    agents of S that reported right, over the total.
  Credit structure: additive. Exact Shapley = each agent's own w_i / W (0 if wrong); leave-one-out
    and every sound estimator agree, and paired estimators are exact (order 1).
  Version history: v0 first release.
"""

from __future__ import annotations

import numpy as np

from mas_credit.games.crew import CrewGame, in_words


class HarvestEnv(CrewGame):
    name = "harvest_v0"
    credit_structure = "additive"
    premise = "Each picker's basket counts only if the picker reports its digit; the harvest is the sum."

    def _rules(self, active, rng):
        weights = np.zeros(self.n_agents, dtype=int)
        weights[active] = rng.integers(1, 4, size=len(active))
        return {"weights": [int(w) for w in weights]}

    def _role(self, task, agent):
        w = task["weights"][agent]
        return f"Your basket weighs {in_words(w)}." if w else "You hold no basket."

    def _value(self, task, present, outcome):
        w = np.array(task["weights"], dtype=float)
        return (present & outcome["correct"]) @ w / w.sum()

    def _shapley(self, task, outcome):
        w = np.array(task["weights"], dtype=float)
        return np.where(outcome["correct"], w / w.sum(), 0.0)

    def _null(self, task, outcome):
        return ~outcome["correct"] | (np.array(task["weights"]) == 0)
