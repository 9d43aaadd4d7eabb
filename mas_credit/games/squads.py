"""squads_v0 — unanimity sub-teams at any team size: a squad scores only if all its members do.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..256), simultaneous (ParallelEnv), one move.
  Parameters: `squad_size` (1..8, default 4): the non-lazy agents are split into squads of that
    size in a random order per task (the last squad may be smaller).
  Task: each squad T has a worth c_T in {1, 2, 3}; each agent holds a private digit.
  Observation: {"text": ...}: the agent's squad mates (by name), the squad's worth and its digit.
  Action: text; read as a digit, as in vault_v0.
  Reward: (sum of c_T over the squads whose every member reported its digit) / (sum of all c_T).
    Components: `correct`, `format`, `parsed` per agent.
  Null action / counterfactual: an absent agent reports nothing, so its squad does not score.
    v(S) = sum of c_T over the squads T inside S whose members all reported right, over the total.
  Credit structure: AND (unanimity sub-teams). Exact Shapley: c_T / (|T| sum c) to each member of
    a squad that scored, 0 to everyone else; leave-one-out gives c_T / sum c to each member.
    squad_size 2 is an order-2 game (paired estimators are exact there): a sanity check.
  Version history: v0 first release.
"""

from __future__ import annotations

from mas_credit.games.base import GameParamError
from mas_credit.games.crew import CrewGame, in_words, unanimity_shapley, unanimity_value


class SquadsEnv(CrewGame):
    name = "squads_v0"
    credit_structure = "AND"
    premise = "The team is split into squads; a squad scores its worth only if every member reports its digit."

    def __init__(self, *args, squad_size: int = 4, **kwargs):
        if not isinstance(squad_size, int) or isinstance(squad_size, bool) or not 1 <= squad_size <= 8:
            raise GameParamError(f"{self.name}: squad_size must be an integer in [1, 8], got {squad_size!r}")
        self.squad_size = squad_size
        super().__init__(*args, **kwargs)

    def _rules(self, active, rng):
        order = [int(a) for a in rng.permutation(active)]
        squads = [order[k : k + self.squad_size] for k in range(0, len(order), self.squad_size)]
        return {"squads": [sorted(s) for s in squads], "worth": [int(c) for c in rng.integers(1, 4, len(squads))]}

    def _terms(self, task):
        return list(zip(task["squads"], task["worth"]))

    def _role(self, task, agent):
        for members, worth in self._terms(task):
            if agent in members:
                mates = [self.possible_agents[j] for j in members if j != agent]
                with_whom = f"with {', '.join(mates)}" if mates else "alone"
                return f"You are in a squad {with_whom}, worth {in_words(worth)}."
        return "You are in no squad."

    def _satisfied(self, task, outcome):
        return [bool(outcome["correct"][members].all()) for members, _ in self._terms(task)]

    def _value(self, task, present, outcome):
        return unanimity_value(present & outcome["correct"], self._terms(task)) / sum(task["worth"])

    def _shapley(self, task, outcome):
        phi = unanimity_shapley(self.n_agents, self._terms(task), self._satisfied(task, outcome))
        return phi / sum(task["worth"])

    def _null(self, task, outcome):
        return self._shapley(task, outcome) == 0.0
