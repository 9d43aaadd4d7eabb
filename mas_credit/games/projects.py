"""projects_v0 — a sparse sum of small unanimity terms at any team size: shared projects.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..256), simultaneous (ParallelEnv), one move.
  Parameters: `max_order` (1..3, default 3): the most agents a project needs; `n_projects` (0 =
    half the team, at least 1): how many projects there are.
  Task: each project T has 1..max_order members (drawn per task among the non-lazy agents; an
    agent may be in several projects or none) and a worth c_T in {1, 2, 3}.
  Observation: {"text": ...}: the projects the agent is in (with its partners, by name) and its digit.
  Action: text; read as a digit, as in vault_v0.
  Reward: (sum of c_T over the projects whose every member reported its digit) / (sum of all c_T).
    Components: `correct`, `format`, `parsed` per agent.
  Null action / counterfactual: an absent agent reports nothing, so its projects do not score.
    v(S) = sum of c_T over the projects T inside S whose members all reported right, over the total:
    a game whose Moebius transform has at most n_projects terms, each of order <= max_order.
  Credit structure: projects (sparse, low order). Exact Shapley = sum of c_T / |T| over the scoring
    projects an agent is in, over the total. max_order 2 gives an order-2 game (paired estimators
    are exact there): a sanity check, not the headline.
  Version history: v0 first release.
"""

from __future__ import annotations

from mas_credit.games.base import GameParamError
from mas_credit.games.crew import CrewGame, in_words, unanimity_shapley, unanimity_value


class ProjectsEnv(CrewGame):
    name = "projects_v0"
    credit_structure = "projects"
    premise = "Each project scores its worth only if every agent on it reports its digit."

    def __init__(self, *args, max_order: int = 3, n_projects: int = 0, **kwargs):
        if not isinstance(max_order, int) or isinstance(max_order, bool) or not 1 <= max_order <= 3:
            raise GameParamError(f"{self.name}: max_order must be an integer in [1, 3], got {max_order!r}")
        if not isinstance(n_projects, int) or isinstance(n_projects, bool) or not 0 <= n_projects <= 4096:
            raise GameParamError(
                f"{self.name}: n_projects must be an integer in [0, 4096] (0: half the team), got {n_projects!r}"
            )
        self.max_order, self.n_projects = max_order, n_projects
        super().__init__(*args, **kwargs)

    def _rules(self, active, rng):
        count = self.n_projects or max(1, self.n_agents // 2)
        projects = []
        for _ in range(count):
            size = int(rng.integers(1, min(self.max_order, len(active)) + 1))
            projects.append(sorted(int(a) for a in rng.choice(active, size=size, replace=False)))
        member_of = [[k for k, members in enumerate(projects) if i in members] for i in range(self.n_agents)]
        return {"projects": projects, "worth": [int(c) for c in rng.integers(1, 4, count)], "member_of": member_of}

    def _terms(self, task):
        return list(zip(task["projects"], task["worth"]))

    def _role(self, task, agent):
        mine = []
        for k in task["member_of"][agent]:
            members, worth = task["projects"][k], task["worth"][k]
            mates = [self.possible_agents[j] for j in members if j != agent]
            mine.append(f"one worth {in_words(worth)} " + (f"with {', '.join(mates)}" if mates else "alone"))
        return f"Your projects: {'; '.join(mine)}." if mine else "You are on no project."

    def _value(self, task, present, outcome):
        return unanimity_value(present & outcome["correct"], self._terms(task)) / sum(task["worth"])

    def _shapley(self, task, outcome):
        satisfied = [bool(outcome["correct"][m].all()) for m in task["projects"]]
        return unanimity_shapley(self.n_agents, self._terms(task), satisfied) / sum(task["worth"])

    def _null(self, task, outcome):
        return self._shapley(task, outcome) == 0.0
