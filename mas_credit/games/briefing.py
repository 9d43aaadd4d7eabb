"""briefing_v0 — informants and a decider: credit for the messages that carried the facts.

Card
  Agents: agent_0 .. agent_{N-2} are informants, agent_{N-1} is the decider (N in 2..8);
    turn-based (AECEnv): each informant speaks once, in index order, then the decider answers.
  Topology: a star into the decider (networkx DiGraph `topology`): every informant sends one
    message to the decider, and the decider reads them all.
  Task: a lock code of F digits (1..9). Each informant holds one private clue:
    - informant 0 holds digit 1 of the code;
    - with `redundant` (default) and at least 3 informants, informant 1 holds digit 1 too
      (two informants know the same fact);
    - with `distractor` (default) and room left, the last informant holds the room number,
      which is not part of the code;
    - every other informant holds the next digit of the code.
    So N=5 (the shipped option) has informants [digit 1, digit 1, digit 2, room] and F=2.
  Observation: {"text": ...}: an informant sees its clue; the decider sees the messages it
    received, one line per informant ("agent_2 (holds digit 2 of the code): 3"), in index order
    (difficulty 2 and 3: in an order shuffled per task).
  Action: informants "TELL: <n>" (leniently: the first number); the decider "CODE: <d1> <d2> ..."
    (leniently: F single digits in a row). An informant's message is "<its clue> is <n>"; one
    whose text did not parse sends an empty message.
  Reward: the share of the code's digits the decider got right. Components: `correct`
    (informants: told their own clue; the decider: its code was the one its messages imply),
    `format`, `parsed` per agent.
  Lazy agents: a lazy informant sends an empty message; a lazy decider answers nothing.
  Null action / counterfactual: an absent informant sends an empty message; an absent
    decider answers nothing (reward 0). A message outside an edge coalition is delivered
    empty. A decider that answered what its messages imply (its turn's
    `info["followed"]`) answers what the replayed messages imply; one that did not keeps its
    answer. The decider's reading: digit f is the content of the first delivered, non-empty
    message about digit f (in index order), or 0 (never right) if none came.
  Credit structure: informing. Over edges: the distractor's message is a null player (exactly
    0); the two messages about digit 1 are an OR pair (equal shares); the others are additive.
  Version history: v0 first release.
"""

from __future__ import annotations

import itertools
import re

import networkx as nx
import numpy as np

from mas_credit.games.base import GameParamError, TurnGame

_TELL_STRICT = re.compile(r"\btell\s*:\s*(\d{1,2})(?!\d)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<!\d)(\d{1,2})(?!\d)")
_CODE_STRICT = re.compile(r"\bcode\s*:\s*((?:\d[\s,-]*)+)", re.IGNORECASE)
_DIGITS = re.compile(r"(?<!\d)\d(?:[\s,-]*\d)*(?!\d)")
ROOM = -1
"""the fact index of the distractor's clue (the room number)"""


def clue_roles(n_informants: int, redundant: bool = True, distractor: bool = True) -> list[int]:
    """Fact index per informant (0.. for the code's digits, ROOM for the distractor)."""
    roles = [0]
    if redundant and n_informants >= 3:
        roles.append(0)
    with_room = distractor and n_informants >= len(roles) + 1 and n_informants >= 2
    while len(roles) < n_informants - with_room:
        roles.append(max(roles) + 1)
    return roles + [ROOM] * with_room


class BriefingEnv(TurnGame):
    name = "briefing_v0"
    credit_structure = "informing"
    sends_messages = True

    def __init__(self, n_agents=5, difficulty=1, lazy_agents=(), render_mode=None, redundant=True, distractor=True):
        super().__init__(n_agents, difficulty, lazy_agents, render_mode)
        for key, value in (("redundant", redundant), ("distractor", distractor)):
            if not isinstance(value, bool):
                raise GameParamError(f"{self.name}: {key} must be true or false, got {value!r}")
        self.decider = n_agents - 1
        self.roles = clue_roles(n_agents - 1, redundant, distractor)  # [N-1] fact index per informant
        self.n_facts = max(self.roles) + 1
        self.distractors = [i for i, r in enumerate(self.roles) if r == ROOM]
        self.topology = nx.DiGraph()
        self.topology.add_nodes_from(range(n_agents))
        self.topology.add_edges_from((i, self.decider) for i in range(n_agents - 1))

    # -- task and play ----------------------------------------------------------------------
    def _make_task(self, rng):
        code = [int(d) for d in rng.integers(1, 10, size=self.n_facts)]
        room = int(rng.integers(1, 10))
        order = list(range(self.n_agents - 1))
        if self.difficulty >= 2:
            order = [int(i) for i in rng.permutation(self.n_agents - 1)]
        return {"code": code, "room": room, "order": order}

    def clue(self, task, informant: int) -> int:
        role = self.roles[informant]
        return task["room"] if role == ROOM else task["code"][role]

    def _label(self, informant: int) -> str:
        role = self.roles[informant]
        return "the room number" if role == ROOM else f"digit {role + 1} of the code"

    def _init_state(self, task):
        queue = [(i, {}) for i in range(self.n_agents - 1)] + [(self.decider, {})]
        return {"queue": queue, "inbox": {}, "answer": None, "told": {}}

    def _idle_view(self, task, agent):
        return f"You are {self.possible_agents[agent]} in a briefing of {self.n_agents}. Wait for your turn."

    def _prompt(self, task, state, agent, ctx):
        me = self.possible_agents[agent]
        if agent != self.decider:
            return (
                f"You are {me}, an informant. Your clue: {self._label(agent)} is {self.clue(task, agent)}. "
                f"{self.possible_agents[self.decider]} (the decider) will read your message. "
                f"Reply in the form 'TELL: <number>'."
            )
        lines = []
        for i in task["order"]:
            content = state["inbox"].get(i)
            said = "(empty message)" if content is None else str(content)
            lines.append(f"{self.possible_agents[i]} ({self._label(i)}): {said}")
        return (
            f"You are {me}, the decider. Open a lock whose code has {self.n_facts} digit(s). "
            f"The informants' messages:\n" + "\n".join(lines) + "\n"
            "Reply with the code in the form 'CODE: " + " ".join(f"<d{f + 1}>" for f in range(self.n_facts)) + "'."
        )

    def decide(self, inbox: dict) -> tuple:
        """The code the delivered messages imply: digit f from the first informant (in index order)
        about digit f whose message arrived non-empty, else 0."""
        code = [0] * self.n_facts
        for f in range(self.n_facts):
            for i, role in enumerate(self.roles):
                if role == f and inbox.get(i) is not None:
                    code[f] = int(inbox[i])
                    break
        return tuple(code)

    def _parse_strict(self, agent, text):
        if agent != self.decider:
            m = _TELL_STRICT.search(text)
            return int(m.group(1)) if m else None
        m = _CODE_STRICT.search(text)
        digits = re.findall(r"\d", m.group(1)) if m else []
        return tuple(int(d) for d in digits) if len(digits) == self.n_facts else None

    def _parse(self, agent, text):
        if agent != self.decider:
            m = _NUMBER.search(text)
            return int(m.group(1)) if m else None
        for m in _DIGITS.finditer(text):
            digits = re.findall(r"\d", m.group())
            if len(digits) == self.n_facts:
                return tuple(int(d) for d in digits)
        return None

    def render_action(self, agent, action):
        if self._idx(agent) != self.decider:
            return f"TELL: {action}"
        return "CODE: " + " ".join(str(d) for d in action)

    def _advance(self, task, state, agent, ctx, action):
        if agent == self.decider:
            if self.active[agent]:
                state["answer"] = None if action is None else tuple(action)
            if ctx.get("turn") is not None:  # live play: note whether it answered what its messages imply
                self.history[ctx["turn"]].info["followed"] = state["answer"] == self.decide(state["inbox"])
            return
        content = int(action) if action is not None and self.active[agent] else None
        state["told"][agent] = action
        text = "" if content is None else f"{self._label(agent)} is {content}"
        delivered = self._send(state, agent, self.decider, text, ctx)
        state["inbox"][agent] = content if delivered else None

    def _reread(self, task, state, agent, turn):
        if agent == self.decider and turn.info.get("followed"):
            return self.decide(state["inbox"])
        return turn.action

    def _outcome(self, task, state):
        answer = state["answer"]
        right = 0 if answer is None else sum(int(a == c) for a, c in zip(answer, task["code"]))
        correct = [float(state["told"].get(i) == self.clue(task, i)) for i in range(self.n_agents - 1)]
        correct.append(float(answer is not None and answer == self.decide(state["inbox"])))
        return right / self.n_facts, {"correct": np.array(correct)}

    # -- scripted and tabular play ----------------------------------------------------------
    def expert_action(self, agent):
        agent = self._idx(agent)
        if agent == self.decider:
            return self.decide(self.state["inbox"])
        return self.clue(self.task, agent)

    def wrong_action(self, agent, rng):
        agent = self._idx(agent)
        if agent == self.decider:
            code = list(self.decide(self.state["inbox"]))
            f = int(rng.integers(self.n_facts))
            code[f] = (code[f] + int(rng.integers(1, 9))) % 10
            return tuple(code)
        return (self.clue(self.task, agent) + int(rng.integers(1, 9)) - 1) % 9 + 1

    def action_universe(self):
        if self.n_facts > 2:
            raise GameParamError(
                f"{self.name} has a tabular form for codes of at most 2 digits (n_agents <= 5 with the "
                f"default roles); this one has {self.n_facts}"
            )
        codes = list(itertools.product(range(10), repeat=self.n_facts))
        return list(range(1, 10)) + codes

    def key_universe(self):
        codes = list(itertools.product(range(10), repeat=self.n_facts))
        return [("clue", n) for n in range(1, 10)] + [("heard", c) for c in codes]

    def observation_key(self, agent):
        agent = self._idx(agent)
        if agent == self.decider:
            return ("heard", self.decide(self.state["inbox"]))
        return ("clue", self.clue(self.task, agent))

    def legal_actions(self, agent):
        """Informants: their clue among three near misses (1..9); the decider: the code its
        messages imply among three codes with one digit changed. Where the right one sits
        depends on the task, so a policy cannot learn "always the first"."""
        agent = self._idx(agent)
        if agent == self.decider:
            implied = self.decide(self.state["inbox"])
            return sorted({implied} | {(((implied[0] + d) % 10),) + implied[1:] for d in (1, 2, 3)})
        n = self.clue(self.task, agent)
        shift = min((n * 7) % 4, n - 1)
        low = max(1, min(n - shift, 6))
        return list(range(low, low + 4))
