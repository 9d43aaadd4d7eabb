"""The policy contract: what rollouts, counterfactuals, the trainer and every backend
agree on. Every team kind (scripted, llm, vllm, mixed, and the plug-in kinds of
`mas_credit.teams`) answers `ActRequest`s with `ActResult`s; nothing else is assumed of a
team unless it declares one of the richer protocols below.

    Policy       act(requests) -> results                    (a member inside a mixed team)
    Team         + kind, seed, n_agents                      (what rollouts and counterfactuals use)
    ModelTeam    + models, adapters, tokenizer, ...          (what the trainer's LLM learner updates)
    TeamKind     a named kind of team or mixed-team member: how to check and build it
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np


@dataclass
class ActRequest:
    """One agent to act in one episode: the live env, the agent index, its prompt, and
    the episode's random generator."""

    env: object
    agent: int
    prompt: str
    rng: np.random.Generator


@dataclass
class ActResult:
    """A policy's answer; LLM policies also fill token ids and behaviour log-probs."""

    text: str
    prompt_ids: list[int] | None = None
    response_ids: list[int] | None = None
    logprobs: list[float] | None = None


@runtime_checkable
class Policy(Protocol):
    """Answers a batch of requests (any agents, any episodes) in order."""

    def act(self, requests: list[ActRequest]) -> list[ActResult]: ...


@runtime_checkable
class Team(Policy, Protocol):
    """A policy for every agent of a game. `kind` names it in reports; `seed` is mixed into
    every re-run's random generator (counterfactual resampling)."""

    kind: str
    seed: int

    @property
    def n_agents(self) -> int: ...


@runtime_checkable
class ModelTeam(Team, Protocol):
    """A team of language models the trainer updates: one base model (or one per agent) with
    a LoRA adapter per agent. `greedy` switches sampling off for evaluation."""

    cfg: Any
    models: list
    model_index: list[int]
    adapters: list[str]
    tokenizer: Any
    device: Any
    greedy: bool

    def plays_adapter(self, agent: int) -> bool: ...

    def model_for(self, agent: int): ...


@dataclass(frozen=True)
class TeamKind:
    """A kind of team (`team.kind`) or mixed-team member (`team.members[i].kind`) from
    outside the package, registered with `mas_credit.agents.register_team_kind` or the
    `mas_credit.teams` entry-point group.

    Args:
      name: what YAML names it (`team: {kind: reader}`, `members: [{kind: reader}, ...]`).
      build: (options, n_agents, seed) -> a `Team` for n agents. The options are
        `team.params` for a whole team, a member's own keys (all but `kind`) for a member.
      check: (options, n_agents) -> None, raising ValueError with one line that names the
        option and the fix; called at config validation, before anything is built.
      description: one line for `describe_team` and the reporting checklist.
    A plug-in kind plays; it never learns (the trainer's learners are tabular and LLM members).
    """

    name: str
    build: Callable[[dict, int, int], Team]
    check: Callable[[dict, int], None] = field(default=lambda options, n_agents: None)
    description: str = ""
