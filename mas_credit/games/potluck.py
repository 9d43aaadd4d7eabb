"""potluck_v0 — additive game: each agent brings one dish; reward = share of needs met.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..8), simultaneous (ParallelEnv), one move.
  Task: m requirements (one per non-lazy agent). Each non-lazy agent privately holds
    the one dish that meets its own requirement plus distractors (1, 3 or 5 by
    difficulty); nobody else holds that dish. Lazy agents hold only distractors.
  Observation: {"text": ...}: the requirement list and the agent's own dishes.
  Action: text; parsed as a dish name: "BRING: bread" (the asked form), else the first
    known dish named outside echoes of the prompt.
  Reward: (requirements met) / m, where requirement r_i is met iff agent i names the
    dish it holds for it. Components: `correct`, `format`, `parsed` per agent.
  Null action / counterfactual: an absent agent brings nothing. v(S) = sum over
    i in S of [agent i brought its dish] / m.
  Credit structure: additive. Exact Shapley = each agent's own contribution
    (1/m or 0); leave-one-out and every sound estimator agree.
  Version history: v0 first release.
"""

from __future__ import annotations

import re

import numpy as np

from mas_credit.games.base import OneShotGame, mask_bits

DISHES = [
    "bread",
    "cheese",
    "olives",
    "salad",
    "soup",
    "rice",
    "beans",
    "pasta",
    "curry",
    "pie",
    "cake",
    "fruit",
    "nuts",
    "dumplings",
    "tacos",
    "sushi",
    "pickles",
    "hummus",
    "falafel",
    "noodles",
    "stew",
    "chips",
    "cookies",
    "pudding",
    "lemonade",
    "tea",
    "coffee",
    "juice",
    "yogurt",
    "muffins",
    "pancakes",
    "waffles",
    "omelette",
    "quiche",
    "risotto",
    "lasagna",
    "burritos",
    "samosas",
    "kebabs",
    "tofu",
]
_STRICT = re.compile(r"\bbring\s*:\s*(" + "|".join(DISHES) + r")\b", re.IGNORECASE)
_TAGGED = re.compile(r"bring\s*[:=]?\s*(?:the\s+)?([a-z]+)", re.IGNORECASE)
_ANY = re.compile(r"\b(" + "|".join(DISHES) + r")\b", re.IGNORECASE)
N_DISTRACTORS = {1: 1, 2: 3, 3: 5}


class PotluckEnv(OneShotGame):
    name = "potluck_v0"
    credit_structure = "additive"

    def _make_task(self, rng):
        k = N_DISTRACTORS[self.difficulty]
        m = int(self.active.sum())
        dishes = list(rng.permutation(DISHES))
        needs, pool = dishes[:m], dishes[m:]
        own, items, j = [], [], 0
        for i in range(self.n_agents):
            extra = [pool[int(x)] for x in rng.choice(len(pool), size=k + (0 if self.active[i] else 1), replace=False)]
            mine = needs[j] if self.active[i] else None
            j += int(self.active[i])
            held = extra + ([mine] if mine else [])
            items.append([held[int(x)] for x in rng.permutation(len(held))])
            own.append(mine)
        return {"needs": [str(x) for x in needs], "own": own, "items": [[str(x) for x in it] for it in items]}

    def _prompt(self, task, agent):
        return (
            f"You are {self.possible_agents[agent]}, one of {self.n_agents} agents at a potluck. "
            f"The party needs: {', '.join(task['needs'])}. You have: {', '.join(task['items'][agent])}. "
            f"Bring the one dish of yours that the party needs. Reply in the form 'BRING: <dish>'."
        )

    def _parse_strict(self, agent, text):
        m = _STRICT.search(text)
        return m.group(1).lower() if m else None

    def _parse(self, agent, text):
        m = _TAGGED.search(text)
        if m and m.group(1).lower() in DISHES:
            return m.group(1).lower()
        m = _ANY.search(text)
        return m.group(1).lower() if m else None

    def render_action(self, agent, action):
        return f"BRING: {action}"

    def action_universe(self):
        return list(DISHES)

    def key_universe(self):
        return list(DISHES) + [None]  # None: a lazy agent, which holds no needed dish

    def observation_key(self, agent):
        return self.task["own"][agent]

    def legal_actions(self, agent):
        return list(self.task["items"][agent])

    def expert_action(self, agent):
        own = self.task["own"][agent]
        return own if own is not None else self.task["items"][agent][0]

    def wrong_action(self, agent, rng):
        others = [d for d in self.task["items"][agent] if d != self.task["own"][agent]]
        return others[int(rng.integers(len(others)))]

    def _correct(self, task, actions):
        return np.array([own is not None and a == own for a, own in zip(actions, task["own"])])

    def _outcome(self, task, actions):
        correct = self._correct(task, actions)
        reward = correct.sum() / len(task["needs"])
        return float(reward), {"correct": correct.astype(float)}

    def team_values(self, episode, masks):
        task = self.make_task(episode.task_seed)
        correct = self._correct(task, self.actions_of(episode))  # [N]
        present = mask_bits(masks, self.n_agents)  # [M, N]
        return (present & correct).sum(axis=1) / len(task["needs"])
