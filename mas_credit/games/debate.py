"""debate_v0 — debate rounds: the agents answer a question, read each other's answers, and answer again.

Card
  Agents: agent_0 .. agent_{N-1} (N in 2..8), turn-based (AECEnv). `rounds` rounds (2..4,
    default 2); in each round every agent answers once, in index order.
  Topology: debate rounds (Du et al. 2023, "Improving factuality and reasoning in language
    models through multiagent debate"). `rounds_graph` is a networkx DiGraph over (round,
    agent) nodes with an edge from each answer to every other agent's answer of the next
    round; the turn order is its lexicographic topological order. `topology` is the same graph
    folded onto the agents (complete: everyone sends to everyone).
  Task: a question with 2, 3 or 4 options (by difficulty). The agents in `informed` (default
    [0]) hold a briefing that identifies the right option (directly at difficulty 1, by
    elimination at 2 and 3); every other agent holds only a hunch, an option drawn at random
    (right with chance 1 / options).
  Messages: in every round but the last, each agent's answer goes to every other agent
    ("agent_0 (briefed) says B"); an answer that did not parse, or a lazy agent's, is an empty
    message. An agent in round r >= 1 reads the answers of round r - 1.
  What the debate implies for an unbriefed agent in round r >= 1 (`implied`): among the
    delivered, non-empty messages of round r - 1, those from briefed senders if any, else all
    of them; the most common option, ties going to the lowest sender index; its own hunch when
    no message arrived.
  Action: text parsed as an option letter: "ANSWER: B" (the asked form), else leniently
    "the answer is B" or the first lone letter A-D ("A" before a lowercase word is the article),
    outside echoes of the prompt.
  Reward: 1 if more than half of the non-lazy agents' last-round answers are right, else 0.
    Components: `correct` (the share of the agent's rounds in which it answered as the protocol
    asks: a briefed agent its briefing's option in every round, an unbriefed one what the debate
    implies in rounds 2..; its first-round hunch is neither right nor wrong), `format`, `parsed`
    per agent. (Scripted players answer their hunch in round 1.)
  Lazy agents: they send empty messages and their answers do not count (nor do they count in
    the majority's size).
  Null action / counterfactual: an absent agent sends empty messages and gives no answer. An
    unbriefed agent that answered what the debate implied (its turn's `info["followed"]`)
    answers what the replayed debate implies; any other answer is kept. A message outside an
    edge coalition is delivered empty.
  Credit structure: debate. With perfect play, N = 3 and agent 0 briefed, every coalition
    holding agent 0 and one other agent wins (the other follows agent 0's message), so exact
    Shapley gives [2/3, 1/6, 1/6] (a veto player and an OR pair) while leave-one-out gives
    [1, 0, 0]. Over messages: agent 0's two messages are an OR pair (1/2 each) and the
    messages between unbriefed agents, whose hunches were wrong, are null players.
  Version history: v0 first release.
"""

from __future__ import annotations

import re
from collections import Counter

import networkx as nx

from mas_credit.games.base import GameParamError, TurnGame
from mas_credit.games.council import LetterAnswers


def rounds_graph(n_agents: int, rounds: int) -> nx.DiGraph:
    """Debate rounds as a DiGraph over (round, agent): every answer feeds every other agent's
    answer of the next round. Its lexicographic topological order is the turn order."""
    graph = nx.DiGraph()
    graph.add_nodes_from((r, i) for r in range(rounds) for i in range(n_agents))
    graph.add_edges_from(
        ((r, j), (r + 1, i)) for r in range(rounds - 1) for j in range(n_agents) for i in range(n_agents) if i != j
    )
    return graph


class DebateEnv(LetterAnswers, TurnGame):
    name = "debate_v0"
    credit_structure = "debate"
    sends_messages = True
    form = "ANSWER"
    strict = re.compile(r"\banswer\s*:\s*([A-Da-d])\b", re.IGNORECASE)
    tagged = re.compile(r"answer\s*(?:is)?\s*[:=]?\s*(?:option\s+)?\(?([A-Da-d])\b", re.IGNORECASE)

    def __init__(self, n_agents=3, difficulty=1, lazy_agents=(), render_mode=None, rounds=2, informed=None):
        super().__init__(n_agents, difficulty, lazy_agents, render_mode)
        if isinstance(rounds, bool) or not isinstance(rounds, int) or not 2 <= rounds <= 4:
            raise GameParamError(f"{self.name}: rounds must be an integer in [2, 4], got {rounds!r}")
        informed = [0] if informed is None else informed
        if (
            not isinstance(informed, (list, tuple))
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_agents for i in informed)
            or len(set(informed)) != len(informed)
        ):
            raise GameParamError(
                f"{self.name}: informed must be a list of distinct agents in 0..{n_agents - 1} (those who hold the "
                f"briefing; [] for none), got {informed!r}"
            )
        self.rounds = rounds
        self.informed = sorted(informed)
        self.rounds_graph = rounds_graph(n_agents, rounds)
        self.turn_order = list(nx.lexicographical_topological_sort(self.rounds_graph))  # [(round, agent)]
        self.topology = nx.DiGraph()
        self.topology.add_nodes_from(range(n_agents))
        self.topology.add_edges_from((j, i) for (_, j), (_, i) in self.rounds_graph.edges)

    # -- task and play ----------------------------------------------------------------------
    def _make_task(self, rng):
        options = self._options()
        task = self._question(rng)
        answer = task["answer"]
        return {
            **task,
            "hunch": [options[int(k)] for k in rng.integers(len(options), size=self.n_agents)],
            "ruled_out": [str(o) for o in rng.permutation([o for o in options if o != answer])],
        }

    def _init_state(self, task):
        position = {node: p for p, node in enumerate(self.turn_order)}  # (round, agent) -> its turn index
        queue = [
            (i, {"round": r, "parent_turn": position[(r - 1, i)] if r else None})  # its own answer the round before
            for r, i in self.turn_order
        ]
        return {
            "queue": queue,
            "answers": [[None] * self.n_agents for _ in range(self.rounds)],  # [round][agent]
            # [receiver][round]: sender -> the option it heard (None: an empty message)
            "inbox": [[{} for _ in range(self.rounds)] for _ in range(self.n_agents)],
            "as_asked": [0] * self.n_agents,
        }

    def _idle_view(self, task, agent):
        return f"You are {self.possible_agents[agent]} in a debate of {self.n_agents}. Wait for your turn."

    def _basis(self, agent: int) -> str:
        return "briefed" if agent in self.informed else "unbriefed"

    def _prompt(self, task, state, agent, ctx):
        r = ctx["round"]
        options = self._options()
        if agent not in self.informed:
            brief = f"You have no briefing; your hunch (unreliable) is {task['hunch'][agent]}."
        elif self.difficulty == 1:
            brief = f"Your briefing says the answer is {task['answer']}."
        else:
            brief = f"Your briefing rules out {', '.join(task['ruled_out'])}; the answer is the remaining option."
        heard = ""
        if r:
            lines = []
            for j in range(self.n_agents):
                if j == agent:
                    continue
                said = state["inbox"][agent][r - 1].get(j)
                told = "sent an empty message" if said is None else f"said {said}"
                lines.append(f"{self.possible_agents[j]} ({self._basis(j)}) {told}")
            heard = f" Answers of round {r}: " + "; ".join(lines) + "."
        return (
            f"You are {self.possible_agents[agent]}, one of {self.n_agents} agents debating over {self.rounds} rounds; "
            f"this is round {r + 1}. Question: {task['question']} Options: {', '.join(options)}. {brief}{heard} "
            f"The team's answer is the majority of the last round's answers. Reply in the form 'ANSWER: <letter>'."
        )

    def implied(self, task, state, agent: int, r: int) -> str:
        """What the debate implies for `agent` in round r >= 1 (module docstring)."""
        delivered = sorted((s, o) for s, o in state["inbox"][agent][r - 1].items() if o is not None)
        pool = [(s, o) for s, o in delivered if s in self.informed] or delivered
        if not pool:
            return task["hunch"][agent]
        counts = Counter(o for _, o in pool)
        top = max(counts.values())
        return next(o for _, o in pool if counts[o] == top)

    def _asked(self, task, state, agent: int, r: int) -> str:
        """The answer the protocol asks of `agent` in round r."""
        if agent in self.informed:
            return task["answer"]
        return task["hunch"][agent] if r == 0 else self.implied(task, state, agent, r)

    def _advance(self, task, state, agent, ctx, action):
        r = ctx["round"]
        answer = action if self.active[agent] else None
        asked = self._asked(task, state, agent, r)
        if r or agent in self.informed:  # a hunch is neither right nor wrong play
            state["as_asked"][agent] += int(answer is not None and answer == asked)
        if ctx.get("turn") is not None:  # live play: note the round, and whether it answered what it read
            self.history[ctx["turn"]].info["round"] = r
            if r and agent not in self.informed:
                self.history[ctx["turn"]].info["followed"] = answer == asked
        state["answers"][r][agent] = answer
        if r == self.rounds - 1:
            return
        for receiver in range(self.n_agents):
            if receiver == agent:
                continue
            text = "" if answer is None else f"{self.possible_agents[agent]} ({self._basis(agent)}) says {answer}"
            delivered = self._send(state, agent, receiver, text, ctx)
            state["inbox"][receiver][r][agent] = answer if delivered else None

    def _reread(self, task, state, agent, turn):
        if turn.info.get("followed"):
            return self.implied(task, state, agent, turn.info["round"])
        return turn.action

    def _outcome(self, task, state):
        last = state["answers"][-1]
        right = sum(1 for i in range(self.n_agents) if self.active[i] and last[i] == task["answer"])
        reward = float(right > self.active.sum() / 2)
        correct = [
            state["as_asked"][i] / (self.rounds if i in self.informed else self.rounds - 1) if self.active[i] else 0.0
            for i in range(self.n_agents)
        ]
        return reward, {"correct": correct}

    # -- scripted and tabular play ----------------------------------------------------------
    def _now(self) -> int:
        return self._current[1]["round"]

    def expert_action(self, agent):
        return self._asked(self.task, self.state, self._idx(agent), self._now())

    def wrong_action(self, agent, rng):
        expert = self.expert_action(agent)
        wrong = [o for o in self._options() if o != expert]
        return wrong[int(rng.integers(len(wrong)))]

    def action_universe(self):
        return list(self._options())

    def key_universe(self):
        return [(basis, o) for basis in ("briefing", "hunch", "heard") for o in self._options()]

    def observation_key(self, agent):
        """A briefed agent: its briefing's option; an unbriefed one: its hunch in round 1, what the
        debate implies after."""
        agent, r = self._idx(agent), self._now()
        if agent in self.informed:
            return ("briefing", self.task["answer"])
        if r == 0:
            return ("hunch", self.task["hunch"][agent])
        return ("heard", self.implied(self.task, self.state, agent, r))
