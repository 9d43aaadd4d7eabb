"""lookout_v0 — OR game (redundancy): the team succeeds if any agent finds the target.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..8), simultaneous (ParallelEnv), one move.
  Task: a grid (5x5, 6x6, 8x8 by difficulty) hides a red flag. Every non-lazy
    agent's scan report lists the flag's cell among decoy sightings (2, 4 or 7 decoys,
    some of them look alike at higher difficulty). Lazy agents' scanners are broken:
    their report holds decoys only and their answer is ignored.
  Observation: {"text": ...}: the agent's scan report.
  Action: text; parsed as a grid cell: "FOUND: C4" (the asked form), else the first
    cell named outside echoes of the prompt.
  Reward: 1 if any non-lazy agent reports the flag's cell, else 0.
    Components: `correct`, `format`, `parsed` per agent.
  Null action / counterfactual: an absent agent reports nothing.
    v(S) = 1 iff some non-lazy agent in S reported the right cell.
  Credit structure: OR. With k agents right, exact Shapley gives 1/k to each of them;
    leave-one-out gives 0 to all when k >= 2.
  Version history: v0 first release.
"""

from __future__ import annotations

import re

import numpy as np

from mas_credit.games.base import OneShotGame, mask_bits

GRID = {1: 5, 2: 6, 3: 8}
N_DECOYS = {1: 2, 2: 4, 3: 7}
DECOYS = {
    1: ["rock", "tree", "blue crate"],
    2: ["rock", "blue flag", "red crate", "tree"],
    3: ["red cloth", "orange flag", "red crate", "blue flag", "rock"],
}
_STRICT = re.compile(r"\bfound\s*:\s*([A-Ha-h])([1-8])\b", re.IGNORECASE)
_TAGGED = re.compile(r"found\s*[:=]?\s*(?:at\s+|in\s+)?([A-Ha-h])\s*([1-8])(?!\d)", re.IGNORECASE)
_CELL = re.compile(r"\b([A-Ha-h])([1-8])\b")


class LookoutEnv(OneShotGame):
    name = "lookout_v0"
    credit_structure = "OR"

    def _cells(self):
        size = GRID[self.difficulty]
        return [f"{chr(65 + r)}{c + 1}" for r in range(size) for c in range(size)]

    def _make_task(self, rng):
        cells = self._cells()
        target = cells[int(rng.integers(len(cells)))]
        others = [c for c in cells if c != target]
        reports = []
        for i in range(self.n_agents):
            n = N_DECOYS[self.difficulty]
            spots = [others[int(x)] for x in rng.choice(len(others), size=n, replace=False)]
            names = DECOYS[self.difficulty]
            sightings = [f"{spot}: {names[int(rng.integers(len(names)))]}" for spot in spots]
            if self.active[i]:
                sightings.insert(int(rng.integers(n + 1)), f"{target}: red flag")
            reports.append(sightings)
        return {"target": target, "reports": reports}

    def _prompt(self, task, agent):
        return (
            f"You are {self.possible_agents[agent]}, one of {self.n_agents} lookouts searching for a red flag. "
            f"The team succeeds if any lookout finds it. Your scan report: {'; '.join(task['reports'][agent])}. "
            f"Reply with the flag's cell in the form 'FOUND: <cell>'."
        )

    def _cell(self, m):
        if not m:
            return None
        row, col = m.group(1).upper(), int(m.group(2))
        size = GRID[self.difficulty]
        return f"{row}{col}" if ord(row) - 65 < size and col <= size else None

    def _parse_strict(self, agent, text):
        return self._cell(_STRICT.search(text))

    def _parse(self, agent, text):
        return self._cell(_TAGGED.search(text) or _CELL.search(text))

    def render_action(self, agent, action):
        return f"FOUND: {action}"

    def action_universe(self):
        return self._cells()

    def key_universe(self):
        return self._cells() + [None]  # None: a broken scanner (lazy agent)

    def observation_key(self, agent):
        return self.task["target"] if self.active[agent] else None

    def legal_actions(self, agent):
        return sorted(s.split(":")[0] for s in self.task["reports"][agent])  # the cells in its scan report

    def expert_action(self, agent):
        return self.task["target"]

    def wrong_action(self, agent, rng):
        decoys = [s.split(":")[0] for s in self.task["reports"][agent] if not s.endswith("red flag")]
        return decoys[int(rng.integers(len(decoys)))]

    def _correct(self, task, actions):
        return np.array([a == task["target"] for a in actions]) & self.active

    def _outcome(self, task, actions):
        correct = self._correct(task, actions)
        return float(correct.any()), {"correct": correct.astype(float)}

    def team_values(self, episode, masks):
        task = self.make_task(episode.task_seed)
        correct = self._correct(task, self.actions_of(episode))  # [N]
        present = mask_bits(masks, self.n_agents)  # [M, N]
        return np.any(present & correct, axis=1).astype(np.float64)
