"""orchestra_v0 — hierarchical (AEC): a main agent delegates parts of a question to
sub-agents, then composes the answer (the shape M-GRPO trains).

Card
  Agents: agent_0 is the main agent; agent_1 .. agent_{N-1} are sub-agents (N in 2..8).
  Task: a question about a made-up place with K parts (2, 3 or 4 by difficulty), each
    asking one attribute (colour, animal, metal, ...). Each part's fact is held by
    exactly one non-lazy sub-agent, whose record sheet also lists decoy facts.
  Turns (AECEnv): (1) main plans: "CALL agent_2: colour; CALL agent_1: animal" — any
    number of calls, at most 2K, in order; (2) each called sub-agent answers its call:
    "ANSWER: teal" or "ANSWER: unknown"; (3) main composes "FINAL: colour=teal; animal=otter".
  Reward: fraction of the K parts answered right in the final answer.
  Parsing: the asked forms above first ("CALL agent_<k>: <attribute>" one per line,
    "FINAL: a=v; b=w", "ANSWER: <value>"), else leniently ("ask agent_2 about the colour",
    "final colour: teal", the first known value named). Echoes of the prompt are not
    read; sub-agents' answers do not read agent names, the main agent's calls do.
  Components: `format` / `parsed` — each agent's share of its turns (main: plan and
    final; sub-agent: its calls) answered in the asked form / read at all.
    `correct` — main: the team reward; sub-agent: share of its calls answered with the
    true fact (or "unknown" for a part it does not hold).
  Lazy agents: sub-agents that hold no needed fact; their line to the main agent is
    cut, so their answers never arrive. The main agent cannot be lazy.
  Null action / counterfactual: an absent main agent makes no calls and no answer
    (reward 0); an absent sub-agent gives no answer to its calls. A final value that
    the main agent copied from a call's answer is re-read from that call in the replay
    (so a missing answer leaves the part unanswered); a value it wrote on its own is kept.
  Credit structure: hierarchical: the main agent is essential (veto); each part's
    holder is essential for that part (additive across parts).
  Tabular form (for tabular members; the moves are abstract and render to text):
    plan   key ("plan", owner of each part in question order); actions ("route", subs):
           call sub-agent subs[j] for part j, every assignment legal ((N-1)^K of them).
    answer key ("answer", holds the asked part?); actions ("reply", "record") the value
           its records give (the true fact if it holds the part, else a decoy value),
           ("reply", "unknown"), ("reply", "wrong") another wrong value.
    final  key ("final",); actions ("compose", "copy") every answer received (the
           expert's move), ("compose", "guess") its own wrong values.
  Version history: v0 first release.
"""

from __future__ import annotations

import itertools
import re

import numpy as np

from mas_credit.games.base import GameParamError, TurnGame

ATTRIBUTES = {
    "colour": ["teal", "amber", "crimson", "violet", "olive", "indigo", "scarlet", "ivory"],
    "animal": ["otter", "heron", "lynx", "badger", "falcon", "marten", "bison", "gecko"],
    "metal": ["tin", "copper", "silver", "zinc", "nickel", "cobalt", "bronze", "iron"],
    "fruit": ["plum", "fig", "quince", "lime", "pear", "mango", "cherry", "apricot"],
    "tree": ["oak", "birch", "cedar", "maple", "willow", "aspen", "elm", "larch"],
    "stone": ["jade", "onyx", "opal", "quartz", "garnet", "topaz", "basalt", "slate"],
}
VALUES = sorted({v for vs in ATTRIBUTES.values() for v in vs})
PLACES = ["Zorvik", "Brell", "Quondal", "Maravet", "Tesk", "Olunde", "Pharos Minor", "Klest"]
N_PARTS = {1: 2, 2: 3, 3: 4}
_CALL = re.compile(r"(?:call|ask)\s+agent_(\d)\s*(?:[:,-]|about|for)?\s*(?:the\s+)?([a-z]+)", re.IGNORECASE)
_FINAL = re.compile(r"final\s*[:=]?(.*)", re.IGNORECASE | re.DOTALL)
_PAIR = re.compile(r"([a-z]+)\s*[=:]\s*([a-z]+)", re.IGNORECASE)
_PLAN_STRICT = re.compile(r"^[ \t]*CALL[ \t]+agent_(\d+)[ \t]*:[ \t]*([a-z]+)[ \t.;]*$", re.IGNORECASE | re.MULTILINE)
_FINAL_STRICT = re.compile(r"\bFINAL\s*:\s*([a-z]+\s*=\s*[a-z]+(?:\s*;\s*[a-z]+\s*=\s*[a-z]+)*)", re.IGNORECASE)
_ANSWER_STRICT = re.compile(r"\bANSWER\s*:\s*([a-z]+)\b", re.IGNORECASE)
_ANSWER = re.compile(r"answer\s*[:=]?\s*([a-z]+)", re.IGNORECASE)
_VALUE = re.compile(r"\b(" + "|".join(VALUES + ["unknown"]) + r")\b", re.IGNORECASE)


class OrchestraEnv(TurnGame):
    name = "orchestra_v0"
    credit_structure = "hierarchical"

    def __init__(self, n_agents=3, difficulty=1, lazy_agents=(), render_mode=None):
        super().__init__(n_agents, difficulty, lazy_agents, render_mode)
        if 0 in self.lazy_agents:
            raise GameParamError(
                f"{self.name}: agent 0 is the main agent and cannot be lazy; list only sub-agents "
                f"(1..{n_agents - 1}) in lazy_agents"
            )
        self.n_parts = N_PARTS[difficulty]
        self.max_calls = 2 * self.n_parts

    def _make_task(self, rng):
        attrs = [str(a) for a in rng.choice(sorted(ATTRIBUTES), size=self.n_parts, replace=False)]
        place = PLACES[int(rng.integers(len(PLACES)))]
        truth = {a: ATTRIBUTES[a][int(rng.integers(len(ATTRIBUTES[a])))] for a in attrs}
        subs = [i for i in range(1, self.n_agents) if self.active[i]]
        owner = {a: subs[int(x) % len(subs)] for a, x in zip(attrs, rng.permutation(len(attrs)))}
        records = {}
        for i in range(1, self.n_agents):
            lines = [f"{a} of {place}: {truth[a]}" for a in attrs if owner[a] == i]
            decoy_place = PLACES[(PLACES.index(place) + 1 + int(rng.integers(len(PLACES) - 1))) % len(PLACES)]
            for a in rng.choice(sorted(ATTRIBUTES), size=2, replace=False):
                lines.append(f"{a} of {decoy_place}: {ATTRIBUTES[str(a)][int(rng.integers(8))]}")
            records[i] = [lines[int(x)] for x in rng.permutation(len(lines))]
        return {"place": place, "attrs": attrs, "truth": truth, "owner": owner, "records": records}

    # -- rules ------------------------------------------------------------------------
    def _init_state(self, task):
        return {
            "queue": [(0, {"phase": "plan"})],
            "calls": [],
            "answers": [],
            "orig_answers": None,
            "plan": None,
            "final": None,
            "sub_correct": {},
        }

    def _advance(self, task, state, agent, ctx, action):
        phase = ctx["phase"]
        if phase == "plan":
            plan = action[1] if action is not None and action[0] == "plan" else None
            state["plan"] = plan
            for call, (sub, attr) in enumerate(plan or ()):
                state["calls"].append((sub, attr))
                state["queue"].append(
                    (sub, {"phase": "answer", "call": call, "attr": attr, "parent_turn": ctx.get("turn")})
                )
            state["queue"].append((0, {"phase": "final"}))
        elif phase == "answer":
            answer = action[1] if action is not None and action[0] == "answer" else None
            state["answers"].append(answer if self.active[agent] else None)
            attr = ctx["attr"]
            right = task["truth"][attr] if task["owner"].get(attr) == agent else "unknown"
            state["sub_correct"].setdefault(agent, []).append(answer == right)
        else:
            state["final"] = dict(action[1]) if action is not None and action[0] == "final" else None

    def _resolved_final(self, state):
        """The main agent's final answer with copied values re-read from the replayed calls."""
        if state["final"] is None:
            return {}
        orig = state["orig_answers"] if state["orig_answers"] is not None else state["answers"]
        out = {}
        for attr, value in state["final"].items():
            copied = [
                c for c, (sub, a) in enumerate(state["calls"]) if a == attr and c < len(orig) and orig[c] == value
            ]
            out[attr] = state["answers"][copied[-1]] if copied else value
        return out

    def _outcome(self, task, state):
        final = self._resolved_final(state)
        right = sum(final.get(a) == task["truth"][a] for a in task["attrs"])
        reward = right / self.n_parts
        correct = np.zeros(self.n_agents)
        correct[0] = reward
        for i in range(1, self.n_agents):
            correct[i] = np.mean(state["sub_correct"][i]) if state["sub_correct"].get(i) else 0.0
        return float(reward), {"correct": correct}

    def _replay_state(self, task, episode):
        # The answers the main agent received in the recorded episode, in call order,
        # tell which of its final values were copies of a call's answer.
        state = self._init_state(task)
        state["orig_answers"] = [
            t.action[1] if t.action is not None and t.action[0] == "answer" and self.active[t.agent] else None
            for t in episode.turns
            if t.agent != 0
        ]
        return state

    # -- text ---------------------------------------------------------------------------
    def _idle_view(self, task, agent):
        if agent == 0:
            return "You are agent_0, the main agent. Wait for your turn."
        records = "; ".join(task["records"][agent])
        return f"You are {self.possible_agents[agent]}, a sub-agent. Your records: {records}. Wait for a call."

    def _prompt(self, task, state, agent, ctx):
        parts = " and ".join(f"the {a}" for a in task["attrs"])
        if ctx["phase"] == "plan":
            directory = "; ".join(
                f"{self.possible_agents[i]} keeps records on "
                f"{', '.join(sorted({a for a, o in task['owner'].items() if o == i} | {'other places'}))}"
                for i in range(1, self.n_agents)
            )
            return (
                f"You are agent_0, the main agent. Question: what are {parts} of {task['place']}? "
                f"Sub-agents: {directory}. Call sub-agents for the parts, one call per line, in the form "
                f"'CALL agent_<k>: <attribute>'."
            )
        if ctx["phase"] == "answer":
            return (
                f"You are {self.possible_agents[agent]}. agent_0 asks you: what is the {ctx['attr']} of "
                f"{task['place']}? "
                f"Your records: {'; '.join(task['records'][agent])}. Reply 'ANSWER: <value>' or 'ANSWER: unknown'."
            )
        got = (
            "; ".join(
                f"{self.possible_agents[sub]} said {attr} = {ans if ans is not None else '(no answer)'}"
                for (sub, attr), ans in zip(state["calls"], state["answers"])
            )
            or "no answers"
        )
        return (
            f"You are agent_0, the main agent. Question: what are {parts} of {task['place']}? Answers received: {got}. "
            f"Compose the final answer in the form 'FINAL: <attribute>=<value>; <attribute>=<value>'."
        )

    def _reads_names(self, agent):
        return agent == 0  # the main agent's calls name sub-agents

    def _final(self, body):
        pairs = [(a.lower(), v.lower()) for a, v in _PAIR.findall(body) if a.lower() in ATTRIBUTES]
        return ("final", tuple(sorted(dict(pairs).items()))) if pairs else None

    def _plan(self, calls):
        calls = [(int(k), a.lower()) for k, a in calls if 1 <= int(k) < self.n_agents and a.lower() in ATTRIBUTES]
        return ("plan", tuple(calls[: self.max_calls])) if calls else None

    def _parse_strict(self, agent, text):
        if agent == 0:
            m = _FINAL_STRICT.search(text)
            return self._final(m.group(1)) if m else self._plan(_PLAN_STRICT.findall(text))
        m = _ANSWER_STRICT.search(text)
        value = m.group(1).lower() if m else None
        return ("answer", value) if value in VALUES or value == "unknown" else None

    def _parse(self, agent, text):
        if agent == 0:
            m = _FINAL.search(text)
            return self._final(m.group(1)) if m else self._plan(_CALL.findall(text))
        m = _ANSWER.search(text)
        if m and (m.group(1).lower() in VALUES or m.group(1).lower() == "unknown"):
            return ("answer", m.group(1).lower())
        m = _VALUE.search(text)
        return ("answer", m.group(1).lower()) if m else None

    def render_action(self, agent, action):
        if action[0] in ("route", "reply", "compose"):
            action = self._concrete(self._idx(agent), action)
        kind, body = action
        if kind == "plan":
            return "\n".join(f"CALL agent_{sub}: {attr}" for sub, attr in body)
        if kind == "final":
            return "FINAL: " + "; ".join(f"{a}={v}" for a, v in body)
        return f"ANSWER: {body}"

    # -- scripted policies ----------------------------------------------------------------
    def expert_action(self, agent):
        agent = self._idx(agent)
        _, ctx = self._current
        task, state = self.task, self.state
        if ctx["phase"] == "plan":
            return ("plan", tuple((task["owner"][a], a) for a in task["attrs"]))
        if ctx["phase"] == "answer":
            attr = ctx["attr"]
            return ("answer", task["truth"][attr] if task["owner"].get(attr) == agent else "unknown")
        got = {attr: ans for (sub, attr), ans in zip(state["calls"], state["answers"]) if ans not in (None, "unknown")}
        return ("final", tuple(sorted(got.items()))) if got else ("final", tuple((a, "unknown") for a in task["attrs"]))

    # -- the tabular form (module docstring) ---------------------------------------------
    def _routes(self):
        if not hasattr(self, "_route_list"):
            self._route_list = [
                ("route", subs) for subs in itertools.product(range(1, self.n_agents), repeat=self.n_parts)
            ]
        return self._route_list

    def action_universe(self):
        return (
            self._routes()
            + [("reply", r) for r in ("record", "unknown", "wrong")]
            + [("compose", c) for c in ("copy", "guess")]
        )

    def key_universe(self):
        return [("plan", subs) for _, subs in self._routes()] + [("answer", True), ("answer", False)] + [("final",)]

    def observation_key(self, agent):
        agent = self._idx(agent)
        _, ctx = self._current
        if ctx["phase"] == "plan":
            return ("plan", tuple(self.task["owner"][a] for a in self.task["attrs"]))
        if ctx["phase"] == "answer":
            return ("answer", self.task["owner"].get(ctx["attr"]) == agent)
        return ("final",)

    def legal_actions(self, agent):
        phase = self._current[1]["phase"]
        kind = {"plan": "route", "answer": "reply", "final": "compose"}[phase]
        return [a for a in self.action_universe() if a[0] == kind]

    def _concrete(self, agent, action):
        """The game move an abstract tabular move stands for, in the current turn."""
        kind, body = action
        task = self.task
        if kind == "route":
            return ("plan", tuple(zip(body, task["attrs"])))
        if kind == "reply":
            attr = self._current[1]["attr"]
            wrong = [v for v in ATTRIBUTES[attr] if v != task["truth"][attr]]
            if body == "unknown":
                return ("answer", "unknown")
            held = task["owner"].get(attr) == agent
            return (
                "answer",
                task["truth"][attr] if body == "record" and held else wrong[0] if body == "record" else wrong[1],
            )
        if body == "copy":
            return self.expert_action(agent)
        return (
            "final",
            tuple(sorted((a, [v for v in ATTRIBUTES[a] if v != task["truth"][a]][0]) for a in task["attrs"])),
        )

    def wrong_action(self, agent, rng):
        agent = self._idx(agent)
        _, ctx = self._current
        task = self.task
        if ctx["phase"] == "plan":
            calls = [(task["owner"][a], a) for a in task["attrs"]]
            k = int(rng.integers(len(calls)))
            others = [i for i in range(1, self.n_agents) if i != calls[k][0]]
            if others:
                calls[k] = (others[int(rng.integers(len(others)))], calls[k][1])
            else:
                calls.pop(k)
            return ("plan", tuple(calls))
        if ctx["phase"] == "answer":
            values = [v for v in ATTRIBUTES[ctx["attr"]] if v != task["truth"][ctx["attr"]]]
            return ("answer", values[int(rng.integers(len(values)))])
        attr = task["attrs"][int(rng.integers(len(task["attrs"])))]
        good = dict(self.expert_action(agent)[1])
        good[attr] = [v for v in ATTRIBUTES[attr] if v != task["truth"][attr]][int(rng.integers(7))]
        return ("final", tuple(sorted(good.items())))
