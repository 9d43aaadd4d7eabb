"""vault_v0 — AND game: the vault opens only if every agent reports its digit.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..8), simultaneous (ParallelEnv), one move.
  Observation: {"text": ...}: the agent's own digit of the code, stated directly
    (difficulty 1), in words (2), or as a small sum (3).
  Action: text; parsed as a digit: "DIGIT: 7" (the asked form), else leniently "digit is 7",
    the first lone digit, or the first digit word. Echoes of the prompt and agent names
    are not read (the 0 of "agent_0" is no answer).
  Reward: 1 if every non-lazy agent reported its own digit, else 0; the same team
    reward for every agent. Components: `correct`, `format`, `parsed` per agent.
  Lazy agents: their panel is disconnected; what they report is ignored.
  Null action / counterfactual: an absent agent reports nothing, so the vault stays
    shut unless that agent is lazy. v(S) = 1 iff S holds every non-lazy agent and all
    of them reported right.
  Credit structure: AND. On success, exact Shapley gives 1/m to each of the m
    non-lazy agents and 0 to lazy ones; leave-one-out gives 1 to every non-lazy agent.
  Version history: v0 first release.
"""

from __future__ import annotations

import re

import numpy as np

from mas_credit.games.base import OneShotGame, mask_bits

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_STRICT = re.compile(r"\bdigit\s*:\s*(\d)(?!\d)", re.IGNORECASE)
_TAGGED = re.compile(r"digit\s*(?:is|[:=])?\s*(\d)(?!\d)", re.IGNORECASE)
_LONE = re.compile(r"(?<!\d)(\d)(?!\d)")
_WORD = re.compile(r"\b(" + "|".join(DIGIT_WORDS) + r")\b", re.IGNORECASE)


class VaultEnv(OneShotGame):
    name = "vault_v0"
    credit_structure = "AND"

    def _make_task(self, rng):
        digits = rng.integers(0, 10, size=self.n_agents)
        addends = [int(rng.integers(0, d + 1)) for d in digits]
        return {"digits": [int(d) for d in digits], "addends": addends}

    def _prompt(self, task, agent):
        d = task["digits"][agent]
        if self.difficulty == 1:
            clue = f"Your digit is {d}."
        elif self.difficulty == 2:
            clue = f"Your digit is {DIGIT_WORDS[d]} (write it as a number)."
        else:
            a = task["addends"][agent]
            clue = f"Your digit is {a} plus {d - a}."
        return (
            f"You are {self.possible_agents[agent]}, one of {self.n_agents} agents opening a vault. "
            f"Each agent holds one digit of the code; the vault opens only if every agent reports its digit. "
            f"{clue} Reply with your digit in the form 'DIGIT: <d>'."
        )

    def _parse_strict(self, agent, text):
        m = _STRICT.search(text)
        return int(m.group(1)) if m else None

    def _parse(self, agent, text):
        for pattern in (_TAGGED, _LONE):
            m = pattern.search(text)
            if m:
                return int(m.group(1))
        m = _WORD.search(text)
        return DIGIT_WORDS.index(m.group(1).lower()) if m else None

    def render_action(self, agent, action):
        return f"DIGIT: {action}"

    def expert_action(self, agent):
        return self.task["digits"][agent]

    def action_universe(self):
        return list(range(10))

    def observation_key(self, agent):
        return self.task["digits"][agent]

    def wrong_action(self, agent, rng):
        return int((self.task["digits"][agent] + rng.integers(1, 10)) % 10)

    def _correct(self, task, actions):
        return np.array([a is not None and a == d for a, d in zip(actions, task["digits"])])

    def _outcome(self, task, actions):
        correct = self._correct(task, actions)
        reward = float(np.all(correct | ~self.active))
        return reward, {"correct": correct.astype(float)}

    def team_values(self, episode, masks):
        task = self.make_task(episode.task_seed)
        correct = self._correct(task, self.actions_of(episode))  # [N]
        present = mask_bits(masks, self.n_agents)  # [M, N]
        return np.all((present & correct) | ~self.active, axis=1).astype(np.float64)
