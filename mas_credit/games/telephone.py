"""telephone_v0 — relay with its messages as edges: each hop transforms the content it passes on.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..8), turn-based (AECEnv), one move each, in the
    order of a networkx chain (parameter `order`, as relay_v0).
  Topology: the chain; station p sends one message to station p+1 ("the value is 17").
  Task, action, parsing, tabular form: as relay_v0 (a start value and one private operation
    per agent; the action is the operation "APPLY: +3", and the env computes the value).
  Messages: each station but the last passes its result on as a message. A station whose
    incoming message was empty (an edge outside the coalition) works from 0; its prompt says
    it received an empty message.
  Reward: 1 if the last station's result equals the target (x0 with every non-lazy agent's
    own operation applied in order), else 0. Components: `correct`, `format`, `parsed`.
  Lazy agents / null action: as relay_v0, a pass-through station (its message carries the
    value unchanged).
  Credit structure: chain. Over edges every message is needed: the operations are increasing,
    so a station working from 0 instead of the value it should have received ends strictly
    below the target. On success exact edge Shapley gives 1/(N-1) to each message.
  Version history: v0 first release.
"""

from __future__ import annotations

from mas_credit.games.relay import RelayEnv, apply_op


class TelephoneEnv(RelayEnv):
    name = "telephone_v0"
    credit_structure = "chain"
    sends_messages = True

    def __init__(self, n_agents=3, difficulty=1, lazy_agents=(), render_mode=None, order=None):
        super().__init__(n_agents, difficulty, lazy_agents, render_mode, order)
        self.topology = self.chain

    def _init_state(self, task):
        return {**super()._init_state(task), "heard": True}

    def _prompt(self, task, state, agent, ctx):
        prompt = super()._prompt(task, state, agent, ctx)
        if state["heard"]:
            return prompt
        sender = self.possible_agents[self.order[ctx["position"] - 1]]
        return prompt.replace(
            f"the value from {sender}: {state['value']}.",
            f"an empty message from {sender}, so you work from 0.",
        )

    def _advance(self, task, state, agent, ctx, action):
        state["actions"][agent] = action
        value = state["value"] if state["heard"] else 0
        if self.active[agent]:
            value = apply_op(value, action)
        state["value"] = value
        p = ctx["position"]
        if p < self.n_agents - 1:
            state["heard"] = self._send(state, agent, self.order[p + 1], f"the value is {value}", ctx)
            if not state["heard"]:
                state["value"] = 0
