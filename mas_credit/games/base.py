"""Shared machinery of the cooperative text games: spaces, the game contract, and
the two PettingZoo env bases (one-shot parallel, turn-based AEC).

The contract every game keeps beyond the PettingZoo API (see docs/architecture.md):
  parse(agent, text, prompt) -> action | None      never raises
  read(agent, text, prompt) -> Reading(action, formatted)
  null_action(agent) -> None               what an absent agent "does"
  render_action(agent, action) -> text     canonical text; parse(render(a)) == a
  make_task(task_seed)                     deterministic in the seed
  team_value(episode, mask) / team_values(episode, masks)
  edge_values(episode, masks)              games with messages: v of delivered message sets
  credit_structure                         additive | AND | OR | threshold | chain | hierarchical | informing
                                           | debate

Every game treats an unparseable action exactly like the null action, so "what a
coalition S is worth" is well defined for any recorded episode.

Reading an answer: a game first tries the form its prompt asks for (`_parse_strict`,
"DIGIT: 7"), then a lenient reading (`_parse`, "it's 7"). Neither reads an echo: runs of
ECHO_WORDS or more words copied from the prompt the agent saw, and agent names (the 0 of
`agent_0`), are blanked before either runs. Every episode records two components per
agent, over its turns: `format` (share answered in the asked form) and `parsed` (share
in which either reading found an answer).

This module holds no game rules: those live in one module per game.
"""

from __future__ import annotations

import re
import string
from typing import Any, ClassVar, NamedTuple

import numpy as np
from gymnasium.spaces import Dict as DictSpace
from gymnasium.spaces import Text
from pettingzoo import AECEnv, ParallelEnv

from mas_credit.coalitions import masks_to_bits
from mas_credit.types import Episode, Message, Turn

CHARSET = string.printable
_CHARSET_SET = frozenset(CHARSET)
OBS_MAX_LENGTH = 4096
ACTION_MAX_LENGTH = 512


class GameParamError(ValueError):
    """A game was built with a bad parameter; the message names it and the fix."""


def normalise_text(text: Any, max_length: int = ACTION_MAX_LENGTH) -> str:
    """Coerce anything into the game's charset: non-printable characters are dropped,
    common unicode punctuation is mapped to ASCII, and the length is capped."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    if not text.isascii():  # the unicode punctuation map has nothing to do on ASCII text
        text = text.translate(_UNICODE_TO_ASCII)
    if not _CHARSET_SET.issuperset(text):
        text = "".join(c for c in text if c in _CHARSET_SET)
    return text[:max_length]


_UNICODE_TO_ASCII = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u00d7": "*",
        "\u00a0": " ",
        "\u2026": "...",
    }
)


ECHO_WORDS = 4
"""a run of this many words that also appears in the prompt is an echo, not an answer"""
_WORDS = re.compile(r"[A-Za-z0-9_]+")
_AGENT_NAME = re.compile(r"\bagent_\d+\b", re.IGNORECASE)


def strip_echo(text: str, prompt: str, n: int = ECHO_WORDS) -> str:
    """`text` with every run of >= n consecutive words that also occur consecutively in
    `prompt` (case-insensitive, punctuation ignored) replaced by one space."""
    words = list(_WORDS.finditer(text))
    if len(words) < n:  # too short to hold an echo (most answers): the prompt need not be read
        return text
    prompt_words = [w.lower() for w in _WORDS.findall(normalise_text(prompt, OBS_MAX_LENGTH))]
    grams = {tuple(prompt_words[i : i + n]) for i in range(len(prompt_words) - n + 1)}
    if not grams:
        return text
    low = [m.group().lower() for m in words]
    cut = [False] * len(words)
    for i in range(len(words) - n + 1):
        if tuple(low[i : i + n]) in grams:
            cut[i : i + n] = [True] * n
    out, pos, i = [], 0, 0
    while i < len(words):
        if not cut[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(words) and cut[j + 1]:
            j += 1
        out += [text[pos : words[i].start()], " "]
        pos, i = words[j].end(), j + 1
    return "".join(out) + text[pos:]


class Reading(NamedTuple):
    """What a game read from one answer text."""

    action: Any
    """the parsed action; None when neither reading found one (the null action is played)"""
    formatted: bool
    """the answer was given in the form the prompt asked for"""


def per_agent_share(turns: list[Turn], n_agents: int, flag: str) -> np.ndarray:
    """[N] mean of a boolean turn field over each agent's turns (0 for an agent with none)."""
    total, hits = np.zeros(n_agents), np.zeros(n_agents)
    for turn in turns:
        total[turn.agent] += 1
        hits[turn.agent] += bool(getattr(turn, flag))
    return np.divide(hits, total, out=np.zeros(n_agents), where=total > 0)


def mask_bits(masks, n_agents: int) -> np.ndarray:
    """[M] integer masks (any team size: Python ints beyond 62 agents) or [M, N] bool rows -> [M, N]
    bool presence (bit i = agent i present)."""
    return masks_to_bits(masks, n_agents)


class GameBase:
    """Parameters, agents, spaces and the team-value contract shared by all games."""

    name: ClassVar[str]
    credit_structure: ClassVar[str]
    sequential: ClassVar[bool]
    max_reward: ClassVar[float] = 1.0
    """the team reward when every agent plays its expert action (the game's best outcome);
    the conformance tests check it"""
    sends_messages: ClassVar[bool] = False
    """the agents send messages (`Episode.messages`), so the game has edge credit (mas_credit.edges)"""
    min_agents: ClassVar[int] = 2
    max_agents: ClassVar[int] = 8
    max_difficulty: ClassVar[int] = 3

    def messages_per_episode(self) -> int | None:
        """How many messages one episode sends, known before playing: one per edge of the game's
        `topology` (a networkx DiGraph) for a game that sends messages; None where the game does not
        say (a game may override it). A config check refuses edge credit over too many messages
        with it, before any rollout."""
        topology = getattr(self, "topology", None)
        return topology.number_of_edges() if self.sends_messages and topology is not None else None

    def __init__(
        self,
        n_agents: int = 3,
        difficulty: int = 1,
        lazy_agents: list[int] | tuple = (),
        render_mode: str | None = None,
    ):
        if (
            not isinstance(n_agents, int)
            or isinstance(n_agents, bool)
            or not self.min_agents <= n_agents <= self.max_agents
        ):
            raise GameParamError(
                f"{self.name}: n_agents must be an integer in [{self.min_agents}, {self.max_agents}], got {n_agents!r}"
            )
        if (
            not isinstance(difficulty, int)
            or isinstance(difficulty, bool)
            or not 1 <= difficulty <= self.max_difficulty
        ):
            raise GameParamError(
                f"{self.name}: difficulty must be an integer in [1, {self.max_difficulty}], got {difficulty!r}"
            )
        lazy = sorted(set(int(i) for i in (lazy_agents or ())))
        bad = [i for i in lazy if not 0 <= i < n_agents]
        if bad:
            raise GameParamError(
                f"{self.name}: lazy_agents {bad} are not agents of a team of {n_agents} (valid: 0..{n_agents - 1})"
            )
        if len(lazy) >= n_agents:
            raise GameParamError(
                f"{self.name}: lazy_agents {lazy} leaves no agent whose actions matter; keep at least one agent out "
                "of lazy_agents"
            )
        if render_mode not in (None, "ansi"):
            raise GameParamError(f"{self.name}: render_mode must be None or 'ansi', got {render_mode!r}")
        self.n_agents = n_agents
        self.difficulty = difficulty
        self.lazy_agents = lazy
        self.active = np.array([i not in lazy for i in range(n_agents)])  # [N] False = lazy (null player)
        self.render_mode = render_mode
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agent_index = {a: i for i, a in enumerate(self.possible_agents)}
        self._obs_space = DictSpace({"text": Text(max_length=OBS_MAX_LENGTH, min_length=0, charset=CHARSET)})
        self._act_space = Text(max_length=ACTION_MAX_LENGTH, min_length=0, charset=CHARSET)
        self.metadata = {"render_modes": ["ansi"], "name": self.name, "is_parallelizable": not self.sequential}
        self.task: dict | None = None
        self.task_seed: int | None = None
        self.history: list[Turn] = []

    # -- spaces (the same object every call, as api_test requires) -------------------
    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    # -- contract ---------------------------------------------------------------------
    def _idx(self, agent) -> int:
        return agent if isinstance(agent, (int, np.integer)) else self.agent_index[agent]

    def parse(self, agent, text: Any, prompt: str = ""):
        """Parsed action of `agent` for `text` (answering `prompt`), or None. Never raises."""
        return self.read(agent, text, prompt).action

    def read(self, agent, text: Any, prompt: str = "") -> Reading:
        """The action in `text` and whether it came in the asked form; echoes of `prompt`
        and agent names are not read (module docstring). Never raises."""
        try:
            idx = self._idx(agent)
            text = strip_echo(normalise_text(text), prompt)
            if not self._reads_names(idx):
                text = _AGENT_NAME.sub(" ", text)
            strict = self._parse_strict(idx, text)
            if strict is not None:
                return Reading(strict, True)
            return Reading(self._parse(idx, text), False)
        except Exception:  # noqa: BLE001 - the contract is "never raises"; a parser bug must not kill a rollout
            return Reading(None, False)

    def _reads_names(self, agent: int) -> bool:
        """Whether `agent`'s answers name agents (then names are not blanked)."""
        return False

    def _with_format(self, components: dict) -> dict:
        """The game's components plus `format` and `parsed` from the recorded turns."""
        return {
            **components,
            "format": per_agent_share(self.history, self.n_agents, "format"),
            "parsed": per_agent_share(self.history, self.n_agents, "valid"),
        }

    def null_action(self, agent):
        """The action of an agent outside the coalition: None (each card says what it means)."""
        return None

    def make_task(self, task_seed: int) -> dict:
        """The task of `task_seed`: a pure function of the seed and the game's parameters."""
        return self._make_task(np.random.default_rng([int(task_seed), self.n_agents, self.difficulty]))

    def team_value(self, episode: Episode, mask: int) -> float:
        """Team reward when agents outside `mask` play their null action and the others
        keep their recorded actions (open-loop replay)."""
        return float(self.team_values(episode, np.array([mask]))[0])

    def team_values(self, episode: Episode, masks) -> np.ndarray:
        """[M] team values for [M] coalition masks (batched where the game can vectorise). Masks are
        integers (Python ints for teams beyond 62 agents: `coalitions.mask_array`)."""
        task = self.make_task(episode.task_seed)
        return np.array([self._replay(task, episode, int(m)) for m in np.asarray(masks)], dtype=np.float64)

    def episode(self, group: int = 0) -> Episode:
        """The episode just played, as an `Episode` (after the env finished)."""
        if self.task is None or self._result is None:
            raise RuntimeError(
                f"{self.name}: episode() called before the episode finished; play until every agent is done"
            )
        reward, components = self._result
        return Episode(
            game=self.name,
            task_seed=int(self.task_seed),
            group=group,
            agents=list(self.possible_agents),
            turns=list(self.history),
            reward=float(reward),
            components={k: [float(x) for x in v] for k, v in components.items()},
            info={"n_agents": self.n_agents, "difficulty": self.difficulty, "lazy_agents": list(self.lazy_agents)},
            messages=list(self._messages()),
        )

    def _messages(self) -> list[Message]:
        """The messages of the episode just played (games with messages override it)."""
        return []

    def edge_values(self, episode: Episode, masks) -> np.ndarray:
        """[M] team values when only the messages in each edge bitmask are delivered (bit m =
        `episode.messages[m]`); the others are replaced by an empty message. Games without
        messages have no edges."""
        raise GameParamError(
            f"{self.name} sends no messages, so it has no edge credit; use a game with messages "
            f"(briefing_v0, debate_v0, telephone_v0)"
        )

    def _new_seed(self, seed) -> int:
        return int(seed) if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])

    def _record(self, agent: int, prompt: str, text: str, reading: Reading, parent: int | None = None, **info) -> int:
        self.history.append(
            Turn(
                agent=agent,
                step=len(self.history),
                prompt=prompt,
                text=text,
                action=reading.action,
                valid=reading.action is not None,
                format=reading.formatted,
                parent=parent,
                info=info,
            )
        )
        return len(self.history) - 1

    def render(self):
        if self.render_mode != "ansi":
            return None
        return "\n".join(f"[{self.possible_agents[t.agent]}] {t.text!r} -> {t.action!r}" for t in self.history)

    def close(self):
        pass

    # -- what each game supplies ------------------------------------------------------
    def _make_task(self, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def _parse_strict(self, agent: int, text: str):
        """The action when `text` gives it in the asked form (e.g. "DIGIT: 7"), else None."""
        raise NotImplementedError

    def _parse(self, agent: int, text: str):
        """The lenient reading, tried when the strict one finds nothing."""
        raise NotImplementedError

    # -- the tabular form (what a tabular learner sees) ------------------------------------
    def action_universe(self) -> list:
        """Every action any agent can take in this game (its order is the tabular policy's
        columns). Games without a tabular form raise a one-line error."""
        raise GameParamError(
            f"{self.name} has no tabular form: tabular members play games that define action_universe, "
            f"key_universe, observation_key and legal_actions (every built-in game does)"
        )

    def key_universe(self) -> list:
        """Every observation key (the tabular policy's rows), in a fixed order."""
        return self.action_universe()

    def observation_key(self, agent: int):
        """A small key of what the agent privately knows now (e.g. its own digit): the
        tabular policy's row. Privileged, like the scripted policies' expert action."""
        raise NotImplementedError

    def legal_actions(self, agent: int) -> list:
        """The actions the agent may take now (a subset of `action_universe`)."""
        return self.action_universe()

    def render_action(self, agent, action) -> str:
        raise NotImplementedError

    def _replay(self, task: dict, episode: Episode, mask: int) -> float:
        raise NotImplementedError


class OneShotGame(GameBase, ParallelEnv):
    """Simultaneous one-move games: every agent sees its private prompt and answers once.

    Subclasses supply `_make_task`, `_prompt(task, agent)`, `_parse_strict`, `_parse`, `render_action`,
    `expert_action(agent)`, `wrong_action(agent, rng)` and `_outcome(task, actions)`
    -> (reward, components); `team_values` may be overridden with a vectorised form.
    """

    sequential = False

    def __init__(self, *args, **kwargs):
        GameBase.__init__(self, *args, **kwargs)
        self.agents: list[str] = []
        self._result = None

    def reset(self, seed=None, options=None):
        self.task_seed = self._new_seed(seed)
        self.task = self.make_task(self.task_seed)
        self.agents = list(self.possible_agents)
        self.history = []
        self._result = None
        self._prompts = [normalise_text(self._prompt(self.task, i), OBS_MAX_LENGTH) for i in range(self.n_agents)]
        observations = {a: {"text": self._prompts[i]} for i, a in enumerate(self.possible_agents)}
        return observations, {a: {} for a in self.agents}

    def observe(self, agent):
        return {"text": self._prompts[self._idx(agent)]}

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError(f"{self.name}: step() after the episode ended; call reset() first")
        unknown = set(actions) - set(self.possible_agents)
        if unknown:
            raise ValueError(
                f"{self.name}: actions for unknown agents {sorted(unknown)}; valid agents: {self.possible_agents}"
            )
        parsed = []
        for i, agent in enumerate(self.possible_agents):
            text = normalise_text(actions.get(agent, ""))
            reading = self.read(i, text, self._prompts[i])
            parsed.append(reading.action)
            self._record(i, self._prompts[i], text, reading)
        reward, components = self._outcome(self.task, parsed)
        self._result = (float(reward), self._with_format(components))
        live = self.agents
        line = f"\nOutcome: team reward {float(reward):.3f}"
        observations = {a: {"text": normalise_text(self._prompts[self._idx(a)] + line, OBS_MAX_LENGTH)} for a in live}
        rewards = {a: float(reward) for a in live}
        terminations = {a: True for a in live}
        truncations = {a: False for a in live}
        infos = {a: {"valid": parsed[self._idx(a)] is not None} for a in live}
        self.agents = []
        return observations, rewards, terminations, truncations, infos

    def actions_of(self, episode: Episode) -> list:
        """Recorded action per agent (one turn each in a one-shot game)."""
        actions = [None] * self.n_agents
        for turn in episode.turns:
            actions[turn.agent] = turn.action
        return actions

    def _replay(self, task, episode, mask):
        actions = [a if (mask >> i) & 1 else self.null_action(i) for i, a in enumerate(self.actions_of(episode))]
        return float(self._outcome(task, actions)[0])


class TurnGame(GameBase, AECEnv):
    """Turn-based games (AEC). The rules are a small state machine over parsed actions,
    used both by `step` (live play) and by `team_value` (replay), so the two cannot drift.

    Subclasses supply `_make_task`, `_parse_strict`, `_parse`, `render_action`, and
      _init_state(task) -> state dict with a "queue" of (agent, context) to act
      _prompt(task, state, agent, ctx) -> str
      _advance(task, state, agent, ctx, action)    applies one action (None = null)
      _outcome(task, state) -> (reward, components)
      expert_action(agent) / wrong_action(agent, rng) for the agent to act now.
    """

    sequential = True

    def __init__(self, *args, **kwargs):
        GameBase.__init__(self, *args, **kwargs)
        self.agents = []
        self._result = None

    def reset(self, seed=None, options=None):
        """`options={"blocked_messages": keys}` replaces the messages with those
        `message_keys` by an empty message (edge counterfactuals, mas_credit.edges)."""
        self.task_seed = self._new_seed(seed)
        self.task = self.make_task(self.task_seed)
        self.state = self._init_state(self.task)
        self.state["blocked"] = frozenset(tuple(k) for k in (options or {}).get("blocked_messages", ()))
        self.history = []
        self._result = None
        self._last_turn_of: dict[int, int] = {}
        self.agents = list(self.possible_agents)
        self.rewards = {a: 0.0 for a in self.agents}
        self._cumulative_rewards = {a: 0.0 for a in self.agents}
        self.terminations = {a: False for a in self.agents}
        self.truncations = {a: False for a in self.agents}
        self.infos = {a: {} for a in self.agents}
        self._views = {i: normalise_text(self._idle_view(self.task, i), OBS_MAX_LENGTH) for i in range(self.n_agents)}
        self._next_turn()

    def _idle_view(self, task, agent: int) -> str:
        return f"You are {self.possible_agents[agent]}. Wait for your turn."

    def _next_turn(self):
        """Load the next queued turn, or finish the episode when the queue is empty."""
        if self.state["queue"]:
            agent, ctx = self.state["queue"][0]
            self._current = (agent, ctx)
            self._views[agent] = normalise_text(self._prompt(self.task, self.state, agent, ctx), OBS_MAX_LENGTH)
            self.agent_selection = self.possible_agents[agent]
            return
        reward, components = self._outcome(self.task, self.state)
        self._result = (float(reward), self._with_format(components))
        for a in self.agents:
            self.rewards[a] = float(reward)
            self.terminations[a] = True
        self.agent_selection = self.agents[0]

    def observe(self, agent):
        return {"text": self._views[self._idx(agent)]}

    def step(self, action):
        agent_name = self.agent_selection
        if self.terminations[agent_name] or self.truncations[agent_name]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent_name] = 0.0
        for a in self.rewards:
            self.rewards[a] = 0.0
        agent, ctx = self.state["queue"].pop(0)
        text = normalise_text(action)
        reading = self.read(agent, text, self._views[agent])
        parsed = reading.action
        self._last_turn_of[agent] = self._record(
            agent, self._views[agent], text, reading, parent=ctx.get("parent_turn")
        )
        ctx = dict(ctx, turn=self._last_turn_of[agent])
        self._advance(self.task, self.state, agent, ctx, parsed)
        self.infos[agent_name] = {"valid": parsed is not None}
        self._next_turn()
        self._accumulate_rewards()

    def _replay(self, task, episode, mask, blocked=frozenset()):
        recorded: dict[int, list] = {}
        for turn in episode.turns:
            recorded.setdefault(turn.agent, []).append(turn)
        used = {i: 0 for i in range(self.n_agents)}
        state = self._replay_state(task, episode)
        state["blocked"] = frozenset(blocked)
        position = 0
        while state["queue"]:
            agent, ctx = state["queue"].pop(0)
            k = used[agent]
            used[agent] += 1
            mine = recorded.get(agent, [])
            if (mask >> agent) & 1 and k < len(mine):
                action = self._reread(task, state, agent, mine[k])
            else:
                action = self.null_action(agent)
            state["position"] = position
            self._advance(task, state, agent, dict(ctx, turn=None), action)
            position += 1
        return float(self._outcome(task, state)[0])

    def _reread(self, task, state, agent: int, turn: Turn):
        """The action a kept agent plays in a replay: its recorded one. A game whose agents
        answer from the messages they read overrides it, so a receiver that acted on its
        messages acts on the messages of the replay (module docstring of mas_credit.edges)."""
        return turn.action

    # -- messages (edges) --------------------------------------------------------------
    def _send(self, state, sender: int, receiver: int, text: str, ctx) -> bool:
        """Record a message from `sender` to `receiver` and say whether it is delivered (False:
        its key was blocked, and the receiver must read an empty message instead)."""
        messages = state.setdefault("messages", [])
        occurrence = sum(1 for m in messages if (m.sender, m.receiver) == (sender, receiver))
        turn = ctx.get("turn")
        messages.append(Message(sender, receiver, int(state.get("position", 0) if turn is None else turn), text))
        return (sender, receiver, occurrence) not in state.get("blocked", ())

    def _messages(self) -> list[Message]:
        return list(self.state.get("messages", [])) if getattr(self, "state", None) else []

    def edge_values(self, episode: Episode, masks) -> np.ndarray:
        if not episode.messages:
            return super().edge_values(episode, masks)
        task = self.make_task(episode.task_seed)
        keys = message_keys(episode.messages)
        full = (1 << self.n_agents) - 1
        return np.array(
            [
                self._replay(task, episode, full, {key for m, key in enumerate(keys) if not (int(mask) >> m) & 1})
                for mask in np.asarray(masks)
            ],
            dtype=np.float64,
        )

    def _replay_state(self, task, episode) -> dict:
        """Initial state for a replay of `episode` (a game may note recorded facts here)."""
        return self._init_state(task)


def message_keys(messages: list[Message]) -> list[tuple[int, int, int]]:
    """Each message's key (sender, receiver, occurrence: how many earlier messages went from that
    sender to that receiver). A key names the same edge in a replay and in a re-run."""
    seen: dict[tuple[int, int], int] = {}
    keys = []
    for m in messages:
        k = seen.get((m.sender, m.receiver), 0)
        seen[(m.sender, m.receiver)] = k + 1
        keys.append((m.sender, m.receiver, k))
    return keys


def play_texts(env, seed: int, texts_for) -> "GameBase":
    """Play one episode through the plain PettingZoo API: `texts_for(agent_index, k)`
    gives agent's k-th text. The slow, obvious path that tests and benchmarks compare
    `team_values` against. Returns the env after the episode ended."""
    env.reset(seed=seed)
    if not env.sequential:
        env.step({a: texts_for(i, 0) for i, a in enumerate(env.possible_agents)})
        return env
    used: dict[int, int] = {}
    for agent in env.agent_iter():
        _, _, terminated, truncated, _ = env.last()
        if terminated or truncated:
            env.step(None)
            continue
        i = env.agent_index[agent]
        used[i] = used.get(i, 0) + 1
        env.step(texts_for(i, used[i] - 1))
    return env
