"""An example plug-in: a game (tally_v0), an estimator (last_word), a team kind (reader) and an
edge estimator (first_word, for games with messages).

tally_v0 — quota game: the team scores 1 when at least `quota` agents report their own
number right.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..8), simultaneous, one move.
  Observation: {"text": ...}: the agent's number (1..9).
  Action: text; "NUMBER: 7" (the asked form), else the first lone digit.
  Reward: 1 if at least `quota` non-lazy agents reported their number, else 0.
  Null action / counterfactual: an absent agent reports nothing.
  Credit structure: threshold (k of n).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from mas_credit.agents import ActRequest, ActResult, TeamKind
from mas_credit.estimators import Needs, register_estimator
from mas_credit.estimators.common import EPS, BaseConfig, CounterfactualConfig, agent_norm, to_turns
from mas_credit.estimators.edges import edge_table, register_edge_estimator
from mas_credit.games.base import GameParamError, OneShotGame, mask_bits
from mas_credit.types import Credit, CreditBatch, EdgeBatch, EdgeCredit

_STRICT = re.compile(r"\bnumber\s*:\s*(\d)\b", re.IGNORECASE)
_LONE = re.compile(r"(?<!\d)(\d)(?!\d)")


class TallyEnv(OneShotGame):
    name = "tally_v0"
    credit_structure = "threshold"

    def __init__(self, n_agents=3, difficulty=1, lazy_agents=(), render_mode=None, quota=2):
        super().__init__(n_agents, difficulty, lazy_agents, render_mode)
        if not isinstance(quota, int) or not 1 <= quota <= int(self.active.sum()):
            raise GameParamError(
                f"{self.name}: quota must be an integer in [1, {int(self.active.sum())}], got {quota!r}"
            )
        self.quota = quota

    def _make_task(self, rng):
        return {"numbers": [int(x) for x in rng.integers(1, 10, size=self.n_agents)]}

    def _prompt(self, task, agent):
        return (
            f"You are {self.possible_agents[agent]}. The team scores if at least {self.quota} agents report their "
            "number. "
            f"Your number is {task['numbers'][agent]}. Reply in the form 'NUMBER: <n>'."
        )

    def _parse_strict(self, agent, text):
        m = _STRICT.search(text)
        return int(m.group(1)) if m else None

    def _parse(self, agent, text):
        m = _LONE.search(text)
        return int(m.group(1)) if m else None

    def render_action(self, agent, action):
        return f"NUMBER: {action}"

    def action_universe(self):  # the tabular form: mixed teams' tabular members can learn tally
        return list(range(1, 10))

    def observation_key(self, agent):
        return self.task["numbers"][self._idx(agent)]

    def expert_action(self, agent):
        return self.task["numbers"][self._idx(agent)]

    def wrong_action(self, agent, rng):
        return int((self.task["numbers"][self._idx(agent)] + rng.integers(1, 9) - 1) % 9 + 1)

    def _right(self, task, actions):
        return np.array([a is not None and a == n for a, n in zip(actions, task["numbers"])]) & self.active

    def _outcome(self, task, actions):
        right = self._right(task, actions)
        return float(right.sum() >= self.quota), {"correct": right.astype(float)}

    def team_values(self, episode, masks):
        right = self._right(self.make_task(episode.task_seed), self.actions_of(episode))
        return ((mask_bits(masks, self.n_agents) & right).sum(axis=1) >= self.quota).astype(np.float64)


@dataclass
class LastWordConfig(BaseConfig):
    eps: float = EPS


@register_estimator(
    "last_word",
    LastWordConfig,
    lambda cfg, n: Needs(groups=True),
    granularity="multi-agent",
    family="baseline (an example plug-in)",
)
def last_word(batch: CreditBatch, cfg: LastWordConfig) -> Credit:
    """All of R to the agent of each episode's last turn."""
    last = ((batch.turn_agent >= 0).sum(dim=1) - 1).clamp(min=0)  # [B]
    agent = batch.turn_agent.gather(1, last[:, None]).clamp(min=0)  # [B, 1]
    credit = torch.zeros((batch.batch_size, batch.n_agents), dtype=batch.reward.dtype, device=batch.device)
    credit.scatter_(1, agent, batch.reward[:, None])
    return Credit(
        credit=credit, advantage=to_turns(agent_norm(credit, batch.group, batch.acted, cfg.eps), batch.turn_agent)
    )


@register_edge_estimator(
    "first_word",
    CounterfactualConfig,
    lambda cfg, n_edges: Needs(coalitions=((1 << n_edges) - 1, 0), kind="ends", mode=cfg.counterfactual, k=cfg.samples),
    family="baseline (an example plug-in)",
)
def first_word(batch: EdgeBatch, cfg: CounterfactualConfig) -> EdgeCredit:
    """All of v(all messages) - v(no messages) to each episode's first message."""
    values = edge_table(batch, [(1 << batch.n_edges) - 1, 0], "first_word")  # [B, 2]
    credit = torch.zeros((batch.batch_size, batch.n_edges), dtype=values.dtype, device=batch.device)
    credit[:, 0] = values[:, 0] - values[:, 1]
    return EdgeCredit(credit)


class ReaderTeam:
    """Agents that read their prompt, as a text policy must (no privileged access to the
    task): each answers the last lone digit of its prompt in the asked form with
    probability `care`, else a random digit."""

    kind = "reader"

    def __init__(self, n_agents: int, care: float, seed: int):
        self._n_agents, self.care, self.seed = n_agents, care, seed

    @property
    def n_agents(self) -> int:
        return self._n_agents

    def act(self, requests: list[ActRequest]) -> list[ActResult]:
        out = []
        for req in requests:
            digits = _LONE.findall(req.prompt)
            read = int(digits[-1]) if digits else 0
            careful = req.rng.random() < self.care
            out.append(ActResult(text=f"NUMBER: {read if careful else int(req.rng.integers(0, 10))}"))
        return out


def _check_reader(options: dict, n_agents: int) -> None:
    unknown = sorted(set(options) - {"care"})
    if unknown:
        raise ValueError(f"unknown option {', '.join(unknown)}; valid options: care")
    care = options.get("care", 0.9)
    if not isinstance(care, (int, float)) or not 0 <= care <= 1:
        raise ValueError(f"care must be a probability in [0, 1], got {care!r}")


READER = TeamKind(
    name="reader",
    build=lambda options, n_agents, seed: ReaderTeam(n_agents, float(options.get("care", 0.9)), seed),
    check=_check_reader,
    description="reads the last digit of its prompt, answers it with probability care",
)
