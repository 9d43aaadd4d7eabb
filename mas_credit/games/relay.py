"""relay_v0 — sequential chain (AEC): each agent applies its own operation in turn.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..8), turn-based (AECEnv), one move each,
    in the topological order of a networkx chain (parameter `order`: a permutation
    of the agents; default 0, 1, ..., N-1).
  Task: a start value x0 and one private operation per agent: "add a" (difficulty 1),
    "add a" or "multiply by m" (2), the same with larger numbers (3).
  Observation: {"text": ...}: the value received from the predecessor and the
    agent's own operation.
  Action: the operation the agent applies, not the value it computes: text parsed
    as ("+", a) or ("*", m) from "APPLY: +3" (the asked form), else leniently
    "add 3", "*2", "times 2", ... outside echoes of the prompt.
    The env applies it to the running value; the last agent's result is the report.
  Reward: 1 if the reported value equals the target (x0 with every non-lazy agent's
    own operation applied in order), else 0. Components: `correct` (applied its own
    operation), `format`, `parsed` per agent.
  Lazy agents: their station is a pass-through; the value goes on unchanged.
  Null action / counterfactual: an absent agent passes the value on unchanged. The
    agents in the coalition re-apply their recorded operations to whatever value
    reaches them, so a change early in the chain propagates to the report.
  Credit structure: chain. Assigned operations strictly increase the value, so
    leaving out any of them (or replacing it by another of the same kind) misses
    the target: on success exact Shapley gives 1/m to each of the m non-lazy agents.
    On failure a wrong operation can stand in for an absent agent's (adding a0 + a1 in
    place of a0 hits the target when agent 1 is left out), so exact Shapley can pay a
    wrong agent and charge a right one, and leave-one-out can charge a right one.
  Version history: v0 first release.
"""

from __future__ import annotations

import re

import networkx as nx
import numpy as np

from mas_credit.games.base import GameParamError, TurnGame, mask_bits

_STRICT = re.compile(r"\bapply\s*:\s*([+*])\s*(\d{1,4})(?!\d)", re.IGNORECASE)
_APPLY = re.compile(r"apply\s*[:=]?\s*([+*xX-])\s*(\d{1,4})(?!\d)", re.IGNORECASE)
_SYMBOL = re.compile(r"(?<![\w)])([+*xX])\s*(\d{1,4})(?!\d)")
_WORDS = re.compile(r"\b(add|plus|multiply(?:\s+by)?|times|subtract|minus)\s+(\d{1,4})(?!\d)", re.IGNORECASE)
_WORD_OP = {"add": "+", "plus": "+", "multiply": "*", "multiply by": "*", "times": "*", "subtract": "-", "minus": "-"}


def apply_op(value, action):
    """Apply a parsed operation to a value (works on numpy arrays); None passes it on."""
    if action is None:
        return value
    op, k = action
    return value + k if op == "+" else value * k if op == "*" else value - k


class RelayEnv(TurnGame):
    name = "relay_v0"
    credit_structure = "chain"

    def __init__(self, n_agents=3, difficulty=1, lazy_agents=(), render_mode=None, order=None):
        super().__init__(n_agents, difficulty, lazy_agents, render_mode)
        order = list(range(n_agents)) if order is None else order
        if sorted(order) != list(range(n_agents)):
            raise GameParamError(f"{self.name}: order must be a permutation of 0..{n_agents - 1}, got {order!r}")
        self.chain = nx.DiGraph()
        self.chain.add_nodes_from(range(n_agents))
        self.chain.add_edges_from(zip(order[:-1], order[1:]))
        self.order = list(nx.topological_sort(self.chain))

    def _make_task(self, rng):
        ops = []
        for _ in range(self.n_agents):
            if self.difficulty >= 2 and rng.random() < 0.4:
                ops.append(("*", int(rng.integers(2, 4))))
            else:
                ops.append(("+", int(rng.integers(1, 10 if self.difficulty < 3 else 50))))
        x0 = int(rng.integers(1, 10))
        target = x0
        for i in self.order:
            target = apply_op(target, ops[i]) if self.active[i] else target
        return {"x0": x0, "ops": ops, "target": int(target)}

    def _init_state(self, task):
        # one turn per station, so the turn a station answers is the previous station's (index p - 1)
        queue = [(i, {"position": p, "parent_turn": p - 1 if p else None}) for p, i in enumerate(self.order)]
        return {"queue": queue, "value": task["x0"], "actions": {}}

    def _idle_view(self, task, agent):
        return f"You are {self.possible_agents[agent]} in a relay of {self.n_agents}. Wait for the value to reach you."

    @staticmethod
    def _describe(op):
        return f"add {op[1]}" if op[0] == "+" else f"multiply by {op[1]}"

    def _prompt(self, task, state, agent, ctx):
        p = ctx["position"]
        source = "the start value" if p == 0 else f"the value from {self.possible_agents[self.order[p - 1]]}"
        last = " You are the last station: your result is the team's report." if p == self.n_agents - 1 else ""
        return (
            f"You are {self.possible_agents[agent]}, station {p + 1} of {self.n_agents} in a relay. "
            f"You receive {source}: {state['value']}. Your operation: {self._describe(task['ops'][agent])}.{last} "
            f"Reply with the operation you apply in the form 'APPLY: +<n>' or 'APPLY: *<n>'."
        )

    def _parse_strict(self, agent, text):
        m = _STRICT.search(text)
        return (m.group(1), int(m.group(2))) if m else None

    def _parse(self, agent, text):
        m = _APPLY.search(text) or _SYMBOL.search(text)
        if m:
            op = {"x": "*", "X": "*"}.get(m.group(1), m.group(1))
            return (op, int(m.group(2)))
        m = _WORDS.search(text)
        if m:
            return (_WORD_OP[" ".join(m.group(1).lower().split())], int(m.group(2)))
        return None

    def render_action(self, agent, action):
        return f"APPLY: {action[0]}{action[1]}"

    def action_universe(self):
        return [("+", k) for k in range(1, 53)] + [("*", k) for k in range(2, 7)]

    def observation_key(self, agent):
        return self.task["ops"][self._idx(agent)]

    def legal_actions(self, agent):
        """Its own operation among three near misses of the same kind, sorted; where the own one
        sits (0..3) depends on the operation, so a policy cannot learn "always the first"."""
        op, k = self.task["ops"][self._idx(agent)]
        lowest = 1 if op == "+" else 2
        shift = min((k * 7 + (op == "*")) % 4, k - lowest)
        return [(op, k + d) for d in range(-shift, 4 - shift)]

    def expert_action(self, agent):
        return self.task["ops"][self._idx(agent)]

    def wrong_action(self, agent, rng):
        op, k = self.task["ops"][self._idx(agent)]
        return (op, k + int(rng.integers(1, 4)))

    def _advance(self, task, state, agent, ctx, action):
        state["actions"][agent] = action
        if self.active[agent]:
            state["value"] = apply_op(state["value"], action)

    def _outcome(self, task, state):
        actions = [state["actions"].get(i) for i in range(self.n_agents)]
        correct = np.array([a is not None and tuple(a) == tuple(op) for a, op in zip(actions, task["ops"])])
        return float(state["value"] == task["target"]), {"correct": correct.astype(float)}

    def team_values(self, episode, masks):
        """Vectorised replay over masks: one pass down the chain, a value per mask."""
        task = self.make_task(episode.task_seed)
        actions = [None] * self.n_agents
        for turn in episode.turns:
            actions[turn.agent] = tuple(turn.action) if turn.action is not None else None
        present = mask_bits(masks, self.n_agents)  # [M, N]
        value = np.full(len(present), task["x0"], dtype=object)  # [M]; exact big ints, no overflow
        for i in self.order:
            if self.active[i] and actions[i] is not None:
                value = np.where(present[:, i], apply_op(value, actions[i]), value)
        return (value == task["target"]).astype(np.float64)
