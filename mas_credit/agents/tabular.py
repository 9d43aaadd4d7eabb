"""Mixed teams: each agent is its own kind of member, so the classic credit settings are cheap
to set up (one learner among noisy teammates, a free rider, a saboteur).

Members (one per agent, in agent order; `team: {kind: mixed, members: [...]}`):
  {kind: scripted, skill: 0.6}        plays the right action with probability `skill`
  {kind: scripted, lazy: true}        always answers nothing (a free rider)
  {kind: scripted, saboteur: true}    always answers a valid but wrong action
  {kind: tabular, lr: 0.5}            a learner: a softmax policy over the game's legal actions,
                                      one row of logits per observation key (the game's
                                      `observation_key`, e.g. the agent's own digit); it learns
                                      in a few hundred episodes, so learning studies can run
                                      many seeds
  {kind: llm}                         an LLM learner with its own LoRA adapter; the team's own
                                      fields (model, temperature, max_new_tokens, lora_*, prompts,
                                      device, dtype) set every LLM member; all of them share one
                                      base model and one batched generate
  {kind: llm, frozen: true}           an LLM that plays and never learns
  {kind: <plug-in kind>, ...}         a plug-in's team kind (mas_credit.agents.kinds) playing this
                                      agent; its other keys are the kind's options; it never learns
Scripted members may also set `malformed_rate`; tabular members `temperature` (sampling; 0 is
greedy) and `frozen: true` (plays, never learns). The tabular policy reads the game's
`legal_actions`/`observation_key` (privileged, like the scripted policies' expert action).

A tabular turn records [key index, *legal action indices] as its prompt ids, [chosen index]
as its response ids and the sampled action's log-probability, so the trainer recomputes
and updates it like an LLM turn. This module must not compute rewards or credit.
"""

from __future__ import annotations

import math

import torch

from mas_credit.agents.kinds import LEARNER_KINDS, MEMBER_KINDS, check_options, plugged_kind, plugged_kinds
from mas_credit.agents.llm import LLMTeam
from mas_credit.agents.protocol import ActRequest, ActResult
from mas_credit.agents.scripted import ScriptedTeam
from mas_credit.plugins import broken_note

MEMBER_KEYS = {
    "scripted": {"kind", "skill", "lazy", "saboteur", "malformed_rate"},
    "tabular": {"kind", "lr", "temperature", "frozen"},
    "llm": {"kind", "frozen"},
}


class TabularPolicy:
    """Logits [keys, actions] (zeros: uniform over the legal actions at first), built from the
    first game it plays (or a checkpoint) and bound to that game's universes."""

    def __init__(self, lr: float = 0.5, temperature: float = 1.0):
        self.lr, self.temperature = float(lr), float(temperature)
        self.game = None
        self.actions: list = []
        self.keys: list = []
        self.logits: torch.Tensor | None = None

    def ensure(self, env) -> None:
        if self.logits is None:
            self._build(env.name, env.action_universe(), env.key_universe())
            self._checked = (type(env), env.n_agents, env.difficulty)
        elif (type(env), env.n_agents, env.difficulty) == self._checked:
            return  # the same kind of env as the last one checked: the same universes
        elif env.name != self.game or env.action_universe() != self.actions:
            raise ValueError(
                f"a tabular member learned {self.game} and cannot play {env.name} (other actions); "
                f"train one game per run"
            )
        else:
            self._checked = (type(env), env.n_agents, env.difficulty)

    def _build(self, game: str, actions: list, keys: list, logits: torch.Tensor | None = None) -> None:
        self.game, self.actions, self.keys = game, list(actions), list(keys)
        self._checked = None  # no env checked against these universes yet
        self.action_index = {a: i for i, a in enumerate(self.actions)}
        self.key_index = {k: i for i, k in enumerate(self.keys)}
        table = (
            torch.zeros((len(self.keys), len(self.actions)), dtype=torch.float64) if logits is None else logits.clone()
        )
        self.logits = torch.nn.Parameter(table, requires_grad=False)
        self._view = self.logits.detach().numpy()  # the same memory: in-place updates show through

    def act(self, request: ActRequest, greedy: bool) -> ActResult:
        env, agent = request.env, request.agent
        self.ensure(env)
        key = self.key_index[env.observation_key(agent)]
        legal = [self.action_index[a] for a in env.legal_actions(agent)]
        # log-softmax over a handful of actions in plain Python: a torch or numpy call per turn costs
        # more than the turn (the view shares the table's memory, so it always reads the current logits)
        row = self._view[key].tolist()
        temperature = self.temperature if self.temperature > 0 else 1.0
        scores = [row[a] / temperature for a in legal]
        top = max(scores)
        weights = [math.exp(x - top) for x in scores]
        total = sum(weights)
        if greedy or self.temperature == 0:
            pick = scores.index(top)
        else:
            threshold, running, pick = request.rng.random() * total, 0.0, len(legal) - 1
            for k, w in enumerate(weights):
                running += w
                if running >= threshold:
                    pick = k
                    break
        logp = scores[pick] - top - math.log(total)
        choice = legal[pick]
        return ActResult(
            text=env.render_action(agent, self.actions[choice]),
            prompt_ids=[key, *legal],
            response_ids=[choice],
            logprobs=[logp],
        )

    def logprobs(self, pairs) -> torch.Tensor:
        """log pi(choice | key) over the legal actions, for (prompt ids, response ids) pairs: [M, 1]."""
        keys = torch.tensor([p[0] for p, _ in pairs])
        width = max(len(p) - 1 for p, _ in pairs)
        legal = torch.zeros((len(pairs), width), dtype=torch.long)
        valid = torch.zeros((len(pairs), width), dtype=torch.bool)
        chosen = torch.zeros(len(pairs), dtype=torch.long)
        for m, (prompt, response) in enumerate(pairs):
            legal[m, : len(prompt) - 1] = torch.tensor(prompt[1:])
            valid[m, : len(prompt) - 1] = True
            chosen[m] = prompt[1:].index(response[0])
        temperature = self.temperature if self.temperature > 0 else 1.0
        rows = self.logits[keys[:, None], legal] / temperature  # [M, W]
        rows = rows.masked_fill(~valid, float("-inf"))
        return torch.log_softmax(rows, dim=1).gather(1, chosen[:, None]).float()  # [M, 1]

    def state_dict(self) -> dict:
        return {
            "game": self.game,
            "actions": self.actions,
            "keys": self.keys,
            "logits": None if self.logits is None else self.logits.detach().clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["logits"] is not None:
            self._build(state["game"], state["actions"], state["keys"], state["logits"])


def _options(member: dict) -> dict:
    """A plug-in member's options: its keys but `kind`."""
    return {k: v for k, v in member.items() if k != "kind"}


def learner_members(members) -> list[int]:
    """The agents of a member list that learn: tabular and LLM members that are not frozen."""
    return [i for i, m in enumerate(members) if m["kind"] in LEARNER_KINDS and not m.get("frozen")]


def check_members(members, n_agents: int | None = None) -> None:
    """One-line errors for a mixed team's member list; builds nothing heavy."""
    if not isinstance(members, (list, tuple)) or not members:
        raise ValueError(
            "team.members must list one member per agent, e.g. [{kind: tabular}, {kind: scripted, skill: 0.6}]"
        )
    if n_agents is not None and len(members) != n_agents:
        raise ValueError(
            f"team.members has {len(members)} members but the game has {n_agents} agents; give one member per agent"
        )
    for i, member in enumerate(members):
        kind = member.get("kind") if isinstance(member, dict) else None
        if kind not in MEMBER_KINDS:
            plugged = plugged_kind(kind) if isinstance(kind, str) else None
            if plugged is None:
                raise ValueError(
                    f"team.members.{i}: kind must be one of {', '.join(MEMBER_KINDS + tuple(plugged_kinds()))} "
                    f"(or a plug-in's package.module:Object), got {kind!r}{broken_note('teams')}"
                )
            check_options(plugged, _options(member), len(members), f"team.members.{i}")
            continue
        unknown = sorted(set(member) - MEMBER_KEYS[kind])
        if unknown:
            raise ValueError(
                f"team.members.{i} ({kind}) has no key {', '.join(unknown)}; valid keys: "
                f"{', '.join(sorted(MEMBER_KEYS[kind]))}"
            )
        if kind == "scripted":
            skill = member.get("skill", 0.9)
            if not isinstance(skill, (int, float)) or not 0 <= skill <= 1:
                raise ValueError(f"team.members.{i}.skill must be a probability in [0, 1], got {skill!r}")
            if member.get("lazy") and member.get("saboteur"):
                raise ValueError(f"team.members.{i} is both lazy and a saboteur; choose one")
        elif kind == "tabular":
            lr, temperature = member.get("lr", 0.5), member.get("temperature", 1.0)
            if not isinstance(lr, (int, float)) or lr <= 0:
                raise ValueError(f"team.members.{i}.lr must be > 0, got {lr!r}")
            if not isinstance(temperature, (int, float)) or temperature < 0:
                raise ValueError(f"team.members.{i}.temperature must be >= 0, got {temperature!r}")


class MixedTeam:
    """A team whose agents are scripted or tabular members (see the module docstring)."""

    kind = "mixed"

    def __init__(self, members: list[dict], seed: int = 0, llm_cfg=None, sequential: bool = False):
        check_members(members)
        self.members = [dict(m) for m in members]
        self.seed = int(seed)
        n = len(members)
        scripted = [m if m["kind"] == "scripted" else {} for m in members]
        self.scripted = ScriptedTeam(
            skills=[float(m.get("skill", 0.9)) for m in scripted],
            lazy=[i for i, m in enumerate(scripted) if m.get("lazy")],
            saboteurs=[i for i, m in enumerate(scripted) if m.get("saboteur")],
            malformed_rate=0.0,
            seed=seed,
        )
        self.malformed = [float(m.get("malformed_rate", 0.0)) for m in scripted]
        self.tabular = {
            i: TabularPolicy(m.get("lr", 0.5), m.get("temperature", 1.0))
            for i, m in enumerate(members)
            if m["kind"] == "tabular"
        }
        self.plugged = {
            i: plugged_kind(m["kind"]).build(_options(m), n, self.seed)  # one team each, for this agent only
            for i, m in enumerate(members)
            if m["kind"] not in MEMBER_KINDS
        }
        self.frozen = sorted(i for i, m in enumerate(members) if m["kind"] in LEARNER_KINDS and m.get("frozen"))
        self.llm_members = [i for i, m in enumerate(members) if m["kind"] == "llm"]
        self.llm = None
        if self.llm_members:
            if llm_cfg is None:
                raise ValueError("a mixed team with LLM members needs the team's LLM settings (load it with load_team)")

            self.llm = LLMTeam(llm_cfg, n, sequential)  # one adapter per agent; the LLM members play theirs
            self.cfg, self.models, self.model_index, self.adapters = (
                llm_cfg,
                self.llm.models,
                self.llm.model_index,
                self.llm.adapters,
            )
            self.tokenizer, self.device = self.llm.tokenizer, self.llm.device
        self._n_agents = n
        self.greedy = False  # evaluation: tabular and LLM members decode greedily
        self.calls = 0

    @property
    def tokens(self) -> int:
        return self.llm.tokens if self.llm is not None else 0

    def plays_adapter(self, agent: int) -> bool:
        return agent in self.llm_members

    def model_for(self, agent: int):
        return self.llm.model_for(agent)

    @property
    def n_agents(self) -> int:
        return self._n_agents

    def learner_agents(self) -> list[int]:
        """The agents that can learn: tabular and LLM members that are not frozen."""
        return learner_members(self.members)

    def act(self, requests: list[ActRequest]) -> list[ActResult]:
        self.calls += len(requests)
        out: list[ActResult | None] = [None] * len(requests)
        llm = [k for k, req in enumerate(requests) if req.agent in self.llm_members]
        if llm:  # one batched generate for every LLM member
            self.llm.greedy = self.greedy
            for k, result in zip(llm, self.llm.act([requests[k] for k in llm])):
                out[k] = result
        for agent, team in self.plugged.items():  # each plug-in member answers its own requests at once
            mine = [k for k, req in enumerate(requests) if req.agent == agent]
            for k, result in zip(mine, team.act([requests[k] for k in mine]) if mine else []):
                out[k] = result
        for k, req in enumerate(requests):
            if req.agent in self.plugged or req.agent in self.llm_members:
                continue
            if req.agent in self.tabular:
                out[k] = self.tabular[req.agent].act(req, self.greedy)
            else:
                out[k] = self.scripted.act_one(req, self.malformed[req.agent])
        return out
