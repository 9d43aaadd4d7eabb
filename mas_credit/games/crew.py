"""Shared machinery of the crew games: teams of 2 to 256 agents whose exact credit is still known.

Every agent privately holds one digit and reports it, as in vault_v0 (the same clue by difficulty,
the same "DIGIT: 7" form and lenient reading); a crew game says what the team makes of who reported
right. Its value is a function of the coalition's effective members only, v(S) = g(S and the
agents that count), so the recorded episode fixes a coalition game, and each game declares that
game's exact Shapley value in closed form or polynomial time (`shapley`) and its null players
(`null_players`). The tests check both against enumeration (and shapiq's exact computer) up to
12 agents; beyond that, enumeration is what this is here to avoid.

A game module supplies, over presence rows [M, N] (who is in each coalition):
  _rules(task, rng)                 the task's structure (weights, squads, projects, ...) (dict)
  _role(task, agent)                one sentence on the agent's part, numbers in words
  _value(task, present, outcome)    [M] team values; `outcome` from `_outcome_of` (per agent: correct,
                                    went = read an answer at all, quality)
  _shapley(task, outcome)           [N] the exact Shapley value of that coalition game
  _null(task, outcome)              [N] bool: agents whose every marginal contribution is 0

Lazy agents count for nothing (their panel is disconnected). This module holds no game's rules.
"""

from __future__ import annotations

import numpy as np

from mas_credit.games.base import OneShotGame, mask_bits
from mas_credit.games.vault import DIGIT_WORDS, VaultEnv

NUMBER_WORDS = DIGIT_WORDS + ["ten", "eleven", "twelve"]
TASK_CACHE = 512
"""tasks a crew game keeps drawn (one training iteration's and one evaluation's, with room)"""


def in_words(k: int) -> str:
    """A small number in words (prompts keep digits for the clue alone)."""
    return NUMBER_WORDS[k] if 0 <= k < len(NUMBER_WORDS) else f"{k} (as counted)"


class CrewGame(OneShotGame):
    """A one-shot game of any team size: each agent reports its digit (vault's mechanic); the value
    of who reported right is the game's (module docstring)."""

    min_agents = 2
    max_agents = 256
    closed_form_credit = True
    """the game declares its exact Shapley value (`shapley`), so studies need no 2**N table"""
    action = "reports its digit"

    # vault's clue and reading of a digit, shared so the two cannot drift apart
    _parse_strict = VaultEnv._parse_strict
    _parse = VaultEnv._parse
    render_action = VaultEnv.render_action

    def make_task(self, task_seed: int) -> dict:
        """The task of `task_seed` (GameBase.make_task), kept for the seeds met lately: a crew game's
        task is read many times per episode (play, every batch of coalition values, the credit) and
        never changed, and drawing a large team's structure costs more than reading it."""
        cache = self.__dict__.setdefault("_tasks", {})
        task = cache.get(int(task_seed))
        if task is None:
            if len(cache) >= TASK_CACHE:
                cache.pop(next(iter(cache)))
            task = cache[int(task_seed)] = super().make_task(task_seed)
        return task

    def _make_task(self, rng):
        digits = rng.integers(0, 10, size=self.n_agents)
        addends = [int(rng.integers(0, d + 1)) for d in digits]
        task = {"digits": [int(d) for d in digits], "addends": addends}
        task.update(self._rules(np.flatnonzero(self.active), rng))
        return task

    def _clue(self, task, agent) -> str:
        d = task["digits"][agent]
        if self.difficulty == 1:
            return f"Your digit is {d}."
        if self.difficulty == 2:
            return f"Your digit is {DIGIT_WORDS[d]} (write it as a number)."
        a = task["addends"][agent]
        return f"Your digit is {a} plus {d - a}."

    def _prompt(self, task, agent):
        return (
            f"You are {self.possible_agents[agent]}, one of {self.n_agents} agents. {self.premise} "
            f"{self._role(task, agent)} {self._clue(task, agent)} Reply with your digit in the form 'DIGIT: <d>'."
        )

    def expert_action(self, agent):
        return self.task["digits"][agent]

    def wrong_action(self, agent, rng):
        return int((self.task["digits"][agent] + rng.integers(1, 10)) % 10)

    def action_universe(self):
        return list(range(10))

    def observation_key(self, agent):
        return self.task["digits"][agent]

    # -- the value of who reported right --------------------------------------------------
    def _outcome_of(self, task, actions) -> dict:
        """Per agent: `correct` (reported its digit), `went` (an answer was read at all), `quality`
        (1 - |reported - digit| / 10 for an answer read, else 0); lazy agents count for nothing."""
        digits = np.array(task["digits"])
        reported = np.array([-100 if a is None else int(a) for a in actions])
        went = (reported >= 0) & self.active
        quality = np.where(went, 1.0 - np.abs(reported - digits) / 10.0, 0.0)
        return {"correct": went & (reported == digits), "went": went, "quality": quality}

    def _outcome(self, task, actions):
        outcome = self._outcome_of(task, actions)
        everyone = np.ones((1, self.n_agents), dtype=bool)
        reward = float(self._value(task, everyone, outcome)[0])
        return reward, {"correct": outcome["correct"].astype(float)}

    def team_values(self, episode, masks):
        task = self.make_task(episode.task_seed)
        outcome = self._outcome_of(task, self.actions_of(episode))
        return np.asarray(self._value(task, mask_bits(masks, self.n_agents), outcome), dtype=np.float64)

    def shapley(self, episode) -> np.ndarray:
        """[N] the exact Shapley value of the episode's coalition game v(S) = team_value(episode, S)."""
        task = self.make_task(episode.task_seed)
        return np.asarray(self._shapley(task, self._outcome_of(task, self.actions_of(episode))), dtype=np.float64)

    def null_players(self, episode) -> np.ndarray:
        """[N] bool: agents whose every marginal contribution is exactly 0 in the episode's game."""
        task = self.make_task(episode.task_seed)
        return np.asarray(self._null(task, self._outcome_of(task, self.actions_of(episode))), dtype=bool)

    # -- what each game supplies -------------------------------------------------------
    premise: str = ""

    def _rules(self, active: np.ndarray, rng) -> dict:
        return {}

    def _role(self, task, agent) -> str:
        raise NotImplementedError

    def _value(self, task, present: np.ndarray, outcome: dict) -> np.ndarray:
        raise NotImplementedError

    def _shapley(self, task, outcome: dict) -> np.ndarray:
        raise NotImplementedError

    def _null(self, task, outcome: dict) -> np.ndarray:
        raise NotImplementedError


def unanimity_shapley(n_agents: int, terms, satisfied) -> np.ndarray:
    """[N] Shapley of sum_T c_T [T inside the coalition] over the terms (members, c) whose `satisfied`
    flag is set: c_T / |T| to each member (Shapley 1953: a unanimity game splits its worth equally)."""
    phi = np.zeros(n_agents)
    for (members, weight), ok in zip(terms, satisfied):
        if ok:
            phi[list(members)] += weight / len(members)
    return phi


def unanimity_value(present_ok: np.ndarray, terms) -> np.ndarray:
    """[M] sum of c_T over the terms whose every member is present and counted ([M, N] bool)."""
    total = np.zeros(present_ok.shape[0])
    for members, weight in terms:
        total += weight * present_ok[:, list(members)].all(axis=1)
    return total
