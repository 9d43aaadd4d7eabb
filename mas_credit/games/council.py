"""council_v0 — weighted threshold game: a weighted majority decides the answer.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..8), simultaneous (ParallelEnv), one move.
  Task: a question with 2, 3 or 4 options (by difficulty). Every agent holds a
    private briefing that identifies the right option (directly at difficulty 1,
    by elimination at 2 and 3). Agent i votes with weight w_i.
  Parameters: `weights` (one positive number per agent; default 2 for every agent
    but the last, which has 1), `quota` (default: strictly more than half of the
    non-lazy agents' total weight).
  Action: text; parsed as an option letter: "VOTE: B" (the asked form), else leniently
    "vote for B" or the first lone letter A-D ("A" before a lowercase word is the
    article), outside echoes of the prompt.
  Reward: 1 if the non-lazy agents voting for the right option carry at least
    `quota` weight (strictly more than half the total by default), else 0.
    Components: `correct`, `format`, `parsed` per agent.
  Lazy agents: their vote is not counted (and their weight leaves the total).
  Null action / counterfactual: an absent agent abstains.
    v(S) = 1 iff the weight of right votes in S reaches the quota.
  Credit structure: threshold. An agent that is never pivotal (no coalition turns
    from losing to winning by adding it) gets exactly 0 Shapley credit even when it
    voted right: with the default weights and an even N, the last agent is such a
    dummy (N=4: weights [2, 2, 2, 1], quota > 3.5). `pivotal_agents()` lists them.
  Version history: v0 first release.
"""

from __future__ import annotations

import itertools
import re

import numpy as np

from mas_credit.games.base import GameParamError, OneShotGame, mask_bits

TOPICS = [
    "Which river feeds the valley?",
    "Which gate is safe to open?",
    "Which path leads to the camp?",
    "Which seed grows in winter?",
    "Which key fits the archive?",
    "Which signal means retreat?",
]
_STRICT = re.compile(r"\bvote\s*:\s*([A-Da-d])\b", re.IGNORECASE)
_TAGGED = re.compile(r"vote\s*(?:for)?\s*[:=]?\s*(?:option\s+)?\(?([A-Da-d])\b", re.IGNORECASE)
_LONE = re.compile(r"\b(?:([B-D])|(A)(?!\s+[a-z]))\b")  # "A" before a lowercase word is the article


class LetterAnswers:
    """Answers that name an option letter: "<FORM>: B" (the asked form, `strict`), else leniently
    `tagged` ("vote for B") or the first lone letter A-D ("A" before a lowercase word is the
    article). Shared by the games whose agents pick among lettered options."""

    form: str = "VOTE"
    strict: re.Pattern = _STRICT
    tagged: re.Pattern = _TAGGED

    def _parse_strict(self, agent, text):
        m = self.strict.search(text)
        return m.group(1).upper() if m else None

    def _parse(self, agent, text):
        m = self.tagged.search(text)
        if m:
            return m.group(1).upper()
        m = _LONE.search(text)
        return (m.group(1) or m.group(2)) if m else None

    def render_action(self, agent, action):
        return f"{self.form}: {action}"

    def _options(self) -> str:
        return "ABCD"[: self.difficulty + 1]

    def _question(self, rng) -> dict:
        """A question and its right option (drawn in this order)."""
        options = self._options()
        answer = options[int(rng.integers(len(options)))]
        return {"answer": answer, "question": TOPICS[int(rng.integers(len(TOPICS)))]}


class CouncilEnv(LetterAnswers, OneShotGame):
    name = "council_v0"
    credit_structure = "threshold"

    def __init__(self, n_agents=3, difficulty=1, lazy_agents=(), render_mode=None, weights=None, quota=None):
        super().__init__(n_agents, difficulty, lazy_agents, render_mode)
        if weights is None:
            weights = [2.0] * (n_agents - 1) + [1.0]
        if (
            not isinstance(weights, (list, tuple))
            or len(weights) != n_agents
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in weights)
        ):
            raise GameParamError(
                f"{self.name}: weights must be a list of {n_agents} positive numbers (one per agent), got {weights!r}"
            )
        self.weights = np.array(weights, dtype=np.float64)
        total = float(self.weights[self.active].sum())
        if quota is None:
            self.quota = None
        elif isinstance(quota, bool) or not isinstance(quota, (int, float)) or not 0 < quota <= total:
            raise GameParamError(
                f"{self.name}: quota must be a number in (0, {total}] (the non-lazy agents' total weight), got "
                f"{quota!r}"
            )
        else:
            self.quota = float(quota)
        self._total = total

    def _wins(self, weight_for):
        weight_for = np.asarray(weight_for)
        if self.quota is None:
            return weight_for > self._total / 2
        return weight_for >= self.quota - 1e-12

    def pivotal_agents(self) -> list[int]:
        """Agents that turn some losing coalition into a winning one (by brute force)."""
        out = []
        for i in range(self.n_agents):
            if not self.active[i]:
                continue
            others = [j for j in range(self.n_agents) if j != i and self.active[j]]
            for r in range(len(others) + 1):
                if any(
                    not self._wins(sum(self.weights[list(s)]))
                    and self._wins(sum(self.weights[list(s)]) + self.weights[i])
                    for s in itertools.combinations(others, r)
                ):
                    out.append(i)
                    break
        return out

    def _make_task(self, rng):
        options = self._options()
        task = self._question(rng)
        answer = task["answer"]
        return {
            **task,
            "order": [
                [str(o) for o in rng.permutation([o for o in options if o != answer])] for _ in range(self.n_agents)
            ],
        }

    def _prompt(self, task, agent):
        options = self._options()
        if self.difficulty == 1:
            brief = f"Your briefing says the answer is {task['answer']}."
        else:
            brief = f"Your briefing rules out {', '.join(task['order'][agent])}; the answer is the remaining option."
        return (
            f"You are {self.possible_agents[agent]}, a council member with voting weight {self.weights[agent]:g}. "
            f"Question: {task['question']} Options: {', '.join(options)}. {brief} "
            f"A weighted majority of right votes is needed. Reply in the form 'VOTE: <letter>'."
        )

    def action_universe(self):
        return list(self._options())

    def observation_key(self, agent):
        return self.task["answer"]  # what the agent's briefing identifies

    def expert_action(self, agent):
        return self.task["answer"]

    def wrong_action(self, agent, rng):
        wrong = [o for o in self._options() if o != self.task["answer"]]
        return wrong[int(rng.integers(len(wrong)))]

    def _correct(self, task, actions):
        return np.array([a == task["answer"] for a in actions]) & self.active

    def _outcome(self, task, actions):
        correct = self._correct(task, actions)
        reward = float(self._wins(float(self.weights[correct].sum())))
        return reward, {"correct": correct.astype(float)}

    def team_values(self, episode, masks):
        task = self.make_task(episode.task_seed)
        correct = self._correct(task, self.actions_of(episode))  # [N]
        present = mask_bits(masks, self.n_agents)  # [M, N]
        weight_for = (present & correct) @ self.weights  # [M]
        return self._wins(weight_for).astype(np.float64)
