"""rampart_v0 — MIN game (weakest link): the wall holds only as well as its weakest segment.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..8), simultaneous (ParallelEnv), one move.
  Task: each agent guards one segment of a wall and is told how many planks its
    segment's brace takes (3..9): directly (difficulty 1), in words (2), or as a small
    sum (3).
  Observation: {"text": ...}: the agent's plank count.
  Action: text; parsed as a number of planks: "PLANKS: 7" (the asked form), else
    leniently "7 planks", the first lone digit, or the first number word. Echoes of the
    prompt and agent names are not read.
  Segment strength: 1.0 braced right (the told count), 0.2 braced wrong (a bad brace
    weakens it), BASE = 0.4 left alone (no answer, or the agent is absent). A lazy
    agent's segment is stone: strength 1.0 whatever it answers.
  Reward: the minimum strength over the segments; the same team reward for every agent.
    Components: `correct`, `format`, `parsed` per agent.
  Null action / counterfactual: an absent agent leaves its segment at BASE, so
    v(empty) = 0.4, not 0: the one built-in game where the empty team is worth something.
    v(S) = min over non-lazy i of (strength of i's brace if i in S, else BASE).
  Credit structure: MIN (weakest link). When every non-lazy agent braced right, v(S) =
    1.0 for S holding all of them and 0.4 otherwise: exact Shapley gives 0.6/m to each
    of the m non-lazy agents (summing to R - v(empty), not R). When w agents braced
    wrong, R = 0.2 and each of them gets -0.2/w: a harmful agent's credit is negative.
  Version history: v0 first release.
"""

from __future__ import annotations

import re

import numpy as np

from mas_credit.games.base import OneShotGame, mask_bits
from mas_credit.games.vault import DIGIT_WORDS

BASE, RIGHT, WRONG = 0.4, 1.0, 0.2
_STRICT = re.compile(r"\bplanks\s*:\s*(\d)(?!\d)", re.IGNORECASE)
_TAGGED = re.compile(r"(?<!\d)(\d)\s*planks?\b|planks?\s*(?:is|are|[:=])?\s*(\d)(?!\d)", re.IGNORECASE)
_LONE = re.compile(r"(?<!\d)(\d)(?!\d)")
_WORD = re.compile(r"\b(" + "|".join(DIGIT_WORDS) + r")\b", re.IGNORECASE)


class RampartEnv(OneShotGame):
    name = "rampart_v0"
    credit_structure = "MIN"

    def _make_task(self, rng):
        planks = rng.integers(3, 10, size=self.n_agents)
        addends = [int(rng.integers(1, p)) for p in planks]
        return {"planks": [int(p) for p in planks], "addends": addends}

    def _prompt(self, task, agent):
        p = task["planks"][agent]
        if self.difficulty == 1:
            clue = f"Your segment's brace takes {p} planks."
        elif self.difficulty == 2:
            clue = f"Your segment's brace takes {DIGIT_WORDS[p]} planks (write it as a number)."
        else:
            a = task["addends"][agent]
            clue = f"Your segment's brace takes {a} plus {p - a} planks."
        return (
            f"You are {self.possible_agents[agent]}, one of {self.n_agents} guards bracing a wall. "
            f"The wall holds only as well as its weakest segment: a right brace makes a segment strong, "
            f"a wrong one makes it weaker than leaving it alone. {clue} "
            f"Reply with the number of planks in the form 'PLANKS: <n>'."
        )

    def _parse_strict(self, agent, text):
        m = _STRICT.search(text)
        return int(m.group(1)) if m else None

    def _parse(self, agent, text):
        m = _TAGGED.search(text) or _LONE.search(text)
        if m:
            return int(next(g for g in m.groups() if g is not None))
        m = _WORD.search(text)
        return DIGIT_WORDS.index(m.group(1).lower()) if m else None

    def render_action(self, agent, action):
        return f"PLANKS: {action}"

    def expert_action(self, agent):
        return self.task["planks"][self._idx(agent)]

    def wrong_action(self, agent, rng):
        p = self.task["planks"][self._idx(agent)]
        return int((p - 3 + rng.integers(1, 7)) % 7 + 3)

    def action_universe(self):
        return list(range(10))

    def key_universe(self):
        return list(range(3, 10))

    def observation_key(self, agent):
        return self.task["planks"][self._idx(agent)]

    def legal_actions(self, agent):
        return list(range(3, 10))

    def _strengths(self, task, actions, present=None):
        """[M, N] segment strengths for [M, N] presence (None: everyone present)."""
        acts = np.array([-1 if a is None else int(a) for a in actions])  # [N]
        braced = np.where(acts < 0, BASE, np.where(acts == np.array(task["planks"]), RIGHT, WRONG))
        present = np.ones((1, self.n_agents), bool) if present is None else present
        strength = np.where(present, braced[None, :], BASE)
        return np.where(self.active[None, :], strength, RIGHT)

    def _outcome(self, task, actions):
        correct = np.array([a is not None and a == p for a, p in zip(actions, task["planks"])])
        return float(self._strengths(task, actions).min()), {"correct": correct.astype(float)}

    def team_values(self, episode, masks):
        task = self.make_task(episode.task_seed)
        return (
            self._strengths(task, self.actions_of(episode), mask_bits(masks, self.n_agents))
            .min(axis=1)
            .astype(np.float64)
        )
