"""beacons_v0 — OR crew game at any team size: the signal gets through if any beacon is lit.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..256), simultaneous (ParallelEnv), one move.
  Task: each non-lazy agent keeps a beacon lit by reporting its private digit; lazy agents have
    none.
  Observation: {"text": ...}: the agent's digit (as in vault_v0).
  Action: text; read as a digit, as in vault_v0.
  Reward: 1 if any non-lazy agent reported its digit, else 0. Components: `correct`, `format`,
    `parsed` per agent.
  Null action / counterfactual: an absent agent's beacon stays dark. v(S) = 1 iff some agent of S
    reported right.
  Credit structure: OR. With k agents right, exact Shapley gives 1/k to each of them (0 to the
    rest); leave-one-out gives 0 to all when k >= 2.
  Version history: v0 first release.
"""

from __future__ import annotations

import numpy as np

from mas_credit.games.crew import CrewGame


class BeaconsEnv(CrewGame):
    name = "beacons_v0"
    credit_structure = "OR"
    premise = "Each agent keeps a beacon lit by reporting its digit; the signal gets through if any beacon is lit."

    def _role(self, task, agent):
        return "Your beacon is ready." if self.active[agent] else "Your beacon is broken."

    def _value(self, task, present, outcome):
        return (present & outcome["correct"]).any(axis=1).astype(float)

    def _shapley(self, task, outcome):
        right = outcome["correct"]
        return np.where(right, 1.0 / max(1, int(right.sum())), 0.0)

    def _null(self, task, outcome):
        return ~outcome["correct"]
