"""Core data types shared by games, rollouts, counterfactuals and estimators.

`Turn` and `Episode` are plain Python records (what happened, in text and ids);
`CreditBatch` is the same information as tensors on one device, which is all an
estimator ever sees; `Credit` is what an estimator returns.

Agent indices follow `env.possible_agents` order everywhere; agent names appear
only at the env boundary and in transcripts. This module must not import games,
agents or estimators: everything else imports it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from mas_credit.coalitions import DENSE_MAX_AGENTS, bits_to_masks, masks_to_bits

COUNTERFACTUAL_MODES = ("replay", "resample")
"""how a counterfactual value is obtained: replay the recorded actions of the agents kept
(absent ones play their null action) | re-run the episode from the first substituted turn"""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`auto`/None -> cuda when present, else cpu; anything else is taken as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' was asked for but CUDA is not available; use device: auto or cpu")
    return torch.device(device)


@dataclass
class Turn:
    """One agent invocation.

    `action` is the game's parsed action (None when the text did not parse; the game
    then plays the agent's null action); `valid` says a (lenient) reading found one,
    `format` that the text gave it in the form the prompt asked for. LLM turns also carry token ids and the
    behaviour policy's per-token log-probabilities. `parent` is the index (in
    `Episode.turns`) of the turn this one answers, or None.
    """

    agent: int
    step: int
    prompt: str
    text: str
    action: Any
    valid: bool
    prompt_ids: list[int] | None = None
    response_ids: list[int] | None = None
    logprobs: list[float] | None = None
    parent: int | None = None
    info: dict = field(default_factory=dict)
    format: bool = False


@dataclass
class Message:
    """One message on an edge of the team's topology: `sender` wrote it in turn `turn` (its
    index in `Episode.turns`) and `receiver` was to read `text`. The players of edge credit
    (mas_credit.edges) are an episode's messages, in the order they were sent."""

    sender: int
    receiver: int
    turn: int
    text: str


@dataclass
class Episode:
    """One joint trajectory of a team in a game.

    `components` maps a component name (format, correct, tool, ...) to one value per
    agent. `coalition_values` maps a coalition bitmask (bit i = agent i present) to the
    team value v(S); `alternative_values` maps agent i to the mean team value when its
    actions are re-drawn from its own policy (COMA's baseline); `critic` holds the
    critic's raw text, parsed shares and whether the parse fell back. All three are
    filled lazily by `mas_credit.counterfactual`. `info["tree_path"]` (tree fan-out
    rollouts only) is the child index taken at each branching turn.

    `messages` lists every message the agents sent, as edges (games with messages only).
    `edge_values` maps an edge bitmask (bit m = message m delivered; the others replaced by
    an empty message) to the team value; `edge_critic` holds the critic's shares per
    message. Both are filled lazily by `mas_credit.edges`.
    """

    game: str
    task_seed: int
    group: int
    agents: list[str]
    turns: list[Turn]
    reward: float
    components: dict[str, list[float]] = field(default_factory=dict)
    coalition_values: dict[int, float] = field(default_factory=dict)
    alternative_values: dict[int, float] = field(default_factory=dict)
    critic: dict | None = None
    info: dict = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    edge_values: dict[int, float] = field(default_factory=dict)
    edge_critic: dict | None = None

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    def acted(self) -> list[bool]:
        """Per agent: did it take at least one turn in this episode."""
        out = [False] * self.n_agents
        for turn in self.turns:
            out[turn.agent] = True
        return out

    def to_dict(self) -> dict:
        """JSON-ready dict (coalition keys become strings; tuples become lists)."""
        data = asdict(self)
        data["coalition_values"] = {str(k): v for k, v in self.coalition_values.items()}
        data["alternative_values"] = {str(k): v for k, v in self.alternative_values.items()}
        data["edge_values"] = {str(k): v for k, v in self.edge_values.items()}
        return _jsonable(data)

    @classmethod
    def from_dict(cls, data: dict) -> "Episode":
        data = dict(data)
        data["turns"] = [Turn(**t) for t in data["turns"]]
        data["coalition_values"] = {int(k): v for k, v in data.get("coalition_values", {}).items()}
        data["alternative_values"] = {int(k): v for k, v in data.get("alternative_values", {}).items()}
        data["messages"] = [Message(**m) for m in data.get("messages", [])]
        data["edge_values"] = {int(k): v for k, v in data.get("edge_values", {}).items()}
        return cls(**data)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


@dataclass
class CreditBatch:
    """A batch of B episodes of one game with N agents, as tensors on one device.

    Shapes and what the masks' zeros / padding mean:
      reward        [B]          team reward R_b
      group         [B]   long   episodes of the same task share a group id (0..G-1)
      acted         [B, N] bool  False: the agent took no turn in that episode
      turn_agent    [B, T] long  agent index of turn t; -1 = padding (no turn)
      turn_valid    [B, T] bool  False: the turn's text did not parse, or padding
      turn_format   [B, T] bool  True: the turn answered in the form its prompt asked for
                                 (a batch built by hand without it: turn_valid)
      coalition_values [B, 2**N] v(S) for bitmask S; NaN = not evaluated (Episode.coalition_values as a
                                 table). The dense form, for small teams (N <= DENSE_MAX_AGENTS); None
                                 in a sparse batch
      coalition_masks [K, N] bool  the sparse form (any N): the K coalitions evaluated in the batch (their
                                 union over its episodes), one presence row each; None in a dense batch
      coalition_table [B, K]     v of coalition k in episode b; NaN = that episode did not evaluate it
      coalition_keys  (K ints)   the same K coalitions as Python-int bitmasks (for look-ups)
      components    {name: [B, N]}  per-agent game components (format, correct, ...)
      critic_share  [B, N]       the critic's share per agent; NaN = no critic ran
      critic_fallback [B] bool   True: the critic's answer did not parse (uniform shares)
      alternative   [B, N]       mean team value with agent i's actions re-drawn from
                                 its policy (COMA); NaN = not evaluated
      tree_node     [B, T] long  tree fan-out rollouts: id of the tree node turn t is;
                                 -1 = not a tree rollout, or padding
      tree_sibling  [B, T] long  id of the node's sibling set (same task, role and
                                 parent); -1 as for tree_node
    """

    reward: torch.Tensor
    group: torch.Tensor
    acted: torch.Tensor
    turn_agent: torch.Tensor
    turn_valid: torch.Tensor
    coalition_values: torch.Tensor | None
    components: dict[str, torch.Tensor]
    critic_share: torch.Tensor
    critic_fallback: torch.Tensor | None = None
    alternative: torch.Tensor | None = None
    tree_node: torch.Tensor | None = None
    tree_sibling: torch.Tensor | None = None
    turn_format: torch.Tensor | None = None
    coalition_masks: torch.Tensor | None = None
    coalition_table: torch.Tensor | None = None
    coalition_keys: tuple | None = None

    def __post_init__(self):
        if self.coalition_values is None and self.coalition_table is not None and self.coalition_keys is None:
            self.coalition_keys = tuple(bits_to_masks(self.coalition_masks.cpu().numpy()))
        self._check()
        self._column = None if self.coalition_keys is None else {key: k for k, key in enumerate(self.coalition_keys)}
        batch_size, n_agents, n_turns = self.reward.shape[0], self.acted.shape[1], self.turn_agent.shape[1]
        if self.critic_fallback is None:
            self.critic_fallback = torch.zeros(batch_size, dtype=torch.bool, device=self.reward.device)
        if self.alternative is None:
            self.alternative = torch.full(
                (batch_size, n_agents), float("nan"), dtype=self.reward.dtype, device=self.reward.device
            )
        if self.tree_node is None:
            self.tree_node = torch.full((batch_size, n_turns), -1, dtype=torch.long, device=self.reward.device)
        if self.tree_sibling is None:
            self.tree_sibling = torch.full((batch_size, n_turns), -1, dtype=torch.long, device=self.reward.device)
        if self.turn_format is None:
            self.turn_format = self.turn_valid.clone()

    def _check(self) -> None:
        """Every constructor passes here: shapes agree, there is at least one episode, the
        rewards and components are finite. One-line errors that name the field."""

        def fail(msg):
            raise ValueError(f"CreditBatch: {msg}")

        if self.reward.dim() != 1 or self.reward.shape[0] == 0:
            fail(f"reward must be [B] with B >= 1 episodes, got shape {list(self.reward.shape)}")
        batch_size = self.reward.shape[0]
        if self.acted.dim() != 2 or self.acted.shape[0] != batch_size or self.acted.shape[1] == 0:
            fail(f"acted must be [B={batch_size}, N >= 1], got shape {list(self.acted.shape)}")
        n_agents = self.acted.shape[1]
        if list(self.group.shape) != [batch_size]:
            fail(f"group must be [B={batch_size}], got shape {list(self.group.shape)}")
        if (
            self.turn_agent.dim() != 2
            or self.turn_agent.shape[0] != batch_size
            or self.turn_valid.shape != self.turn_agent.shape
        ):
            fail(
                f"turn_agent and turn_valid must both be [B={batch_size}, T], got {list(self.turn_agent.shape)} and "
                f"{list(self.turn_valid.shape)}"
            )
        if self.turn_format is not None and self.turn_format.shape != self.turn_agent.shape:
            fail(
                f"turn_format must be [B={batch_size}, T={self.turn_agent.shape[1]}] like turn_agent, got "
                f"{list(self.turn_format.shape)}"
            )
        if (self.coalition_values is None) == (self.coalition_table is None):
            fail("give either coalition_values (dense [B, 2**N]) or coalition_masks + coalition_table (sparse)")
        if self.coalition_values is not None and list(self.coalition_values.shape) != [batch_size, 1 << n_agents]:
            fail(
                f"coalition_values must be [B={batch_size}, 2**N={1 << n_agents}], got shape "
                f"{list(self.coalition_values.shape)}"
            )
        if self.coalition_table is not None:
            if (
                self.coalition_masks is None
                or self.coalition_masks.dim() != 2
                or self.coalition_masks.shape[1] != n_agents
            ):
                fail(f"coalition_masks must be [K, N={n_agents}] bool beside coalition_table")
            n_keys = self.coalition_masks.shape[0]
            if list(self.coalition_table.shape) != [batch_size, n_keys] or len(self.coalition_keys) != n_keys:
                fail(
                    f"coalition_table must be [B={batch_size}, K={n_keys}] with K coalition_keys, got shape "
                    f"{list(self.coalition_table.shape)} and {len(self.coalition_keys)} keys"
                )
        for name, value in [
            ("critic_share", self.critic_share),
            *((f"components['{k}']", v) for k, v in self.components.items()),
        ]:
            if list(value.shape) != [batch_size, n_agents]:
                fail(f"{name} must be [B={batch_size}, N={n_agents}], got shape {list(value.shape)}")
        bad = (~torch.isfinite(self.reward)).nonzero().flatten().tolist()
        if bad:
            fail(f"reward must be finite; episodes {bad[:5]} have {self.reward[bad[0]].item()}")
        for name, value in self.components.items():
            if not bool(torch.isfinite(value).all()):
                fail(
                    f"components['{name}'] must be finite; episode "
                    f"{int((~torch.isfinite(value)).any(1).nonzero()[0])} is not"
                )

    @property
    def batch_size(self) -> int:
        return self.reward.shape[0]

    @property
    def n_agents(self) -> int:
        return self.acted.shape[1]

    @property
    def n_turns(self) -> int:
        return self.turn_agent.shape[1]

    @property
    def device(self) -> torch.device:
        return self.reward.device

    @property
    def is_dense(self) -> bool:
        """True: the batch holds the dense [B, 2**N] table; False: the evaluated coalitions only."""
        return self.coalition_values is not None

    def values_at(self, masks) -> torch.Tensor:
        """[B, M] v(S) of the given coalitions (Python-int bitmasks), from either form; NaN where an
        episode did not evaluate one (or, sparse, where no episode of the batch did)."""
        masks = [int(m) for m in masks]
        if self.is_dense:
            index = torch.tensor(masks, dtype=torch.long, device=self.device)
            return self.coalition_values[:, index]
        column = [self._column.get(m, -1) for m in masks]
        index = torch.tensor(column, dtype=torch.long, device=self.device)
        out = self.coalition_table[:, index.clamp(min=0)]
        return torch.where(index >= 0, out, torch.full_like(out, float("nan")))

    def evaluated_counts(self) -> torch.Tensor:
        """[B] how many distinct coalitions each episode of the batch has a value for."""
        table = self.coalition_values if self.is_dense else self.coalition_table
        return (~torch.isnan(table)).sum(dim=1)

    @classmethod
    def from_episodes(
        cls,
        episodes: list[Episode],
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        coalitions: str = "auto",
    ) -> "CreditBatch":
        """Stack episodes of one game (same team size) into tensors.

        Groups are renumbered 0..G-1 in order of first appearance, so any group ids
        the caller used are fine. `coalitions`: `dense` (the [B, 2**N] table; N <= DENSE_MAX_AGENTS),
        `sparse` (the evaluated coalitions only; any N) or `auto` (dense up to DENSE_MAX_AGENTS agents).
        """
        if coalitions not in ("auto", "dense", "sparse"):
            raise ValueError(f"coalitions must be auto, dense or sparse, got '{coalitions}'")
        if not episodes:
            raise ValueError("CreditBatch.from_episodes needs at least one episode (got an empty list)")
        n_agents = episodes[0].n_agents
        games = {ep.game for ep in episodes}
        if len(games) > 1 or any(ep.n_agents != n_agents for ep in episodes):
            raise ValueError(
                f"CreditBatch.from_episodes needs episodes of one game and team size; got games {sorted(games)} "
                f"and team sizes {sorted({ep.n_agents for ep in episodes})}"
            )
        batch_size = len(episodes)
        n_turns = max(1, max(len(ep.turns) for ep in episodes))
        dense = coalitions == "dense" or (coalitions == "auto" and n_agents <= DENSE_MAX_AGENTS)
        if dense and n_agents > DENSE_MAX_AGENTS:
            raise ValueError(
                f"a dense coalition table for {n_agents} agents would hold 2**{n_agents} values per episode; the "
                f"dense form stops at {DENSE_MAX_AGENTS} agents: use coalitions='sparse' (or 'auto')"
            )

        group_ids: dict[int, int] = {}
        group = [group_ids.setdefault(ep.group, len(group_ids)) for ep in episodes]
        acted = [ep.acted() for ep in episodes]
        turn_agent = [[t.agent for t in ep.turns] + [-1] * (n_turns - len(ep.turns)) for ep in episodes]
        turn_valid = [[bool(t.valid) for t in ep.turns] + [False] * (n_turns - len(ep.turns)) for ep in episodes]
        turn_format = [[bool(t.format) for t in ep.turns] + [False] * (n_turns - len(ep.turns)) for ep in episodes]

        if dense:
            coalition = torch.full((batch_size, 1 << n_agents), float("nan"), dtype=dtype)
            for b, ep in enumerate(episodes):
                if ep.coalition_values:
                    masks = torch.tensor(list(ep.coalition_values.keys()), dtype=torch.long)
                    coalition[b, masks] = torch.tensor(list(ep.coalition_values.values()), dtype=dtype)
            sparse = {}
        else:
            coalition = None
            sparse = _sparse_coalitions(episodes, n_agents, dtype)

        names = sorted({name for ep in episodes for name in ep.components})
        components = {}
        for name in names:
            values = torch.zeros((batch_size, n_agents), dtype=dtype)
            for b, ep in enumerate(episodes):
                if name in ep.components:
                    values[b] = torch.tensor(ep.components[name], dtype=dtype)
            components[name] = values

        critic_share = torch.full((batch_size, n_agents), float("nan"), dtype=dtype)
        critic_fallback = torch.zeros(batch_size, dtype=torch.bool)
        for b, ep in enumerate(episodes):
            if ep.critic and ep.critic.get("shares") is not None:
                critic_share[b] = torch.tensor(ep.critic["shares"], dtype=dtype)
                critic_fallback[b] = bool(ep.critic.get("fallback", False))

        alternative = torch.full((batch_size, n_agents), float("nan"), dtype=dtype)
        for b, ep in enumerate(episodes):
            for i, value in ep.alternative_values.items():
                alternative[b, int(i)] = value

        tree_node, tree_sibling = _tree_ids(episodes, group, n_turns)

        batch = cls(
            reward=torch.tensor([ep.reward for ep in episodes], dtype=dtype),
            group=torch.tensor(group, dtype=torch.long),
            acted=torch.tensor(acted, dtype=torch.bool),
            turn_agent=torch.tensor(turn_agent, dtype=torch.long),
            turn_valid=torch.tensor(turn_valid, dtype=torch.bool),
            coalition_values=coalition,
            components=components,
            critic_share=critic_share,
            critic_fallback=critic_fallback,
            alternative=alternative,
            tree_node=tree_node,
            tree_sibling=tree_sibling,
            turn_format=torch.tensor(turn_format, dtype=torch.bool),
            **sparse,
        )
        return batch.to(device) if device is not None else batch

    def to(self, device: str | torch.device) -> "CreditBatch":
        device = resolve_device(device)
        return CreditBatch(
            reward=self.reward.to(device),
            group=self.group.to(device),
            acted=self.acted.to(device),
            turn_agent=self.turn_agent.to(device),
            turn_valid=self.turn_valid.to(device),
            coalition_values=None if self.coalition_values is None else self.coalition_values.to(device),
            components={k: v.to(device) for k, v in self.components.items()},
            critic_share=self.critic_share.to(device),
            critic_fallback=self.critic_fallback.to(device),
            alternative=self.alternative.to(device),
            tree_node=self.tree_node.to(device),
            tree_sibling=self.tree_sibling.to(device),
            turn_format=self.turn_format.to(device),
            coalition_masks=None if self.coalition_masks is None else self.coalition_masks.to(device),
            coalition_table=None if self.coalition_table is None else self.coalition_table.to(device),
            coalition_keys=self.coalition_keys,
        )


def _sparse_coalitions(episodes: list[Episode], n_agents: int, dtype: torch.dtype) -> dict:
    """The sparse coalition fields of a batch: the union of the coalitions its episodes evaluated (in
    order of first appearance), their presence rows, and each episode's values (NaN where it has none)."""
    first = tuple(episodes[0].coalition_values)
    if all(tuple(ep.coalition_values) == first for ep in episodes):  # the common case: one design for all
        keys = first
        table = torch.tensor([list(ep.coalition_values.values()) for ep in episodes], dtype=dtype)
        table = table.reshape(len(episodes), len(keys))
    else:
        keys = tuple(dict.fromkeys(m for ep in episodes for m in ep.coalition_values))
        column = {m: k for k, m in enumerate(keys)}
        table = torch.full((len(episodes), len(keys)), float("nan"), dtype=dtype)
        for b, ep in enumerate(episodes):
            if ep.coalition_values:
                cols = torch.tensor([column[m] for m in ep.coalition_values], dtype=torch.long)
                table[b, cols] = torch.tensor(list(ep.coalition_values.values()), dtype=dtype)
    masks = (
        torch.from_numpy(masks_to_bits(list(keys), n_agents).copy())
        if keys
        else torch.zeros((0, n_agents), dtype=torch.bool)
    )
    return {"coalition_masks": masks, "coalition_table": table, "coalition_keys": keys}


def _tree_ids(episodes: list[Episode], group: list[int], n_turns: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Node and sibling-set ids per turn for tree fan-out rollouts (see `rollout.collect_tree`).

    Turn t of a leaf whose path is p is the node (group, p[:t+1]); its siblings share
    (group, p[:t], the acting agent). Turns after the last branching level are their own
    singleton node and sibling set (nothing to compare them with).
    """
    node_ids: dict = {}
    sibling_ids: dict = {}
    tree_node = torch.full((len(episodes), n_turns), -1, dtype=torch.long)
    tree_sibling = torch.full((len(episodes), n_turns), -1, dtype=torch.long)
    for b, ep in enumerate(episodes):
        path = ep.info.get("tree_path")
        if path is None:
            continue
        path = tuple(int(c) for c in path)
        for t, turn in enumerate(ep.turns):
            if t < len(path):
                node_key = (group[b], path[: t + 1])
                sibling_key = (group[b], path[:t], turn.agent)
            else:
                node_key = sibling_key = ("leaf", b, t)
            tree_node[b, t] = node_ids.setdefault(node_key, len(node_ids))
            tree_sibling[b, t] = sibling_ids.setdefault(sibling_key, len(sibling_ids))
    return tree_node, tree_sibling


@dataclass
class Credit:
    """What an estimator returns.

    credit       [B, N]  the team reward decomposed per agent (what studies score)
    advantage    [B, T]  the learning signal per turn; 0 on padding
    turn_weight  [B, T]  loss weight per turn (M-GRPO's aligned rows count a turn 0, 1
                         or several times); None = 1 on every real turn
    metrics      cost counters and fallback counts, slash-separated keys
    """

    credit: torch.Tensor
    advantage: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    turn_weight: torch.Tensor | None = None

    def cpu(self) -> "Credit":
        """The same credit with every tensor on the CPU (for numpy, tables and comparisons)."""
        return Credit(
            self.credit.cpu(),
            self.advantage.cpu(),
            dict(self.metrics),
            None if self.turn_weight is None else self.turn_weight.cpu(),
        )


MAX_EDGES = 16
"""most messages per episode that edge credit handles (its value table is [B, 2**E])"""


@dataclass
class EdgeBatch:
    """A batch of B episodes whose players are their E messages (edges), as tensors on one device.

    Every episode of a batch sent the same number of messages E (the game's topology fixes it).
    Shapes and what NaN / the masks mean:
      reward         [B]          team reward R_b
      group          [B]   long   episodes of the same task share a group id (0..G-1)
      edge_values    [B, 2**E]    v(E') for edge bitmask E' (bit m = message m delivered, the others
                                  replaced by an empty message); NaN = not evaluated
      sender         [B, E] long  agent that sent message m
      receiver       [B, E] long  agent that was to read it
      edge_turn      [B, E] long  index (in Episode.turns) of the turn that sent it
      critic_share   [B, E]       the critic's share per message; NaN = no critic ran
      critic_fallback [B] bool    True: the critic's answer did not parse (uniform shares)
    `n_agents` is the team size (for informing credit per agent).
    """

    reward: torch.Tensor
    group: torch.Tensor
    edge_values: torch.Tensor
    sender: torch.Tensor
    receiver: torch.Tensor
    edge_turn: torch.Tensor
    critic_share: torch.Tensor
    critic_fallback: torch.Tensor
    n_agents: int

    @property
    def batch_size(self) -> int:
        return self.reward.shape[0]

    @property
    def n_edges(self) -> int:
        return self.sender.shape[1]

    @property
    def device(self) -> torch.device:
        return self.reward.device

    @classmethod
    def from_episodes(
        cls, episodes: list[Episode], device: str | torch.device | None = None, dtype: torch.dtype = torch.float64
    ) -> "EdgeBatch":
        if not episodes:
            raise ValueError("EdgeBatch.from_episodes needs at least one episode (got an empty list)")
        counts = sorted({len(ep.messages) for ep in episodes})
        if len(counts) > 1 or counts[0] == 0:
            raise ValueError(
                f"EdgeBatch.from_episodes needs episodes that each sent the same number (>= 1) of messages; got "
                f"{counts} (edge credit is for games with messages, e.g. briefing_v0 or telephone_v0)"
            )
        n_edges = counts[0]
        if n_edges > MAX_EDGES:
            raise ValueError(
                f"episodes sent {n_edges} messages; edge credit handles at most {MAX_EDGES} per episode "
                f"(its value table is [B, 2**E]); use a smaller team"
            )
        group_ids: dict[int, int] = {}
        group = [group_ids.setdefault(ep.group, len(group_ids)) for ep in episodes]
        values = torch.full((len(episodes), 1 << n_edges), float("nan"), dtype=dtype)
        critic_share = torch.full((len(episodes), n_edges), float("nan"), dtype=dtype)
        critic_fallback = torch.zeros(len(episodes), dtype=torch.bool)
        for b, ep in enumerate(episodes):
            if ep.edge_values:
                masks = torch.tensor(list(ep.edge_values.keys()), dtype=torch.long)
                values[b, masks] = torch.tensor(list(ep.edge_values.values()), dtype=dtype)
            if ep.edge_critic and ep.edge_critic.get("shares") is not None:
                critic_share[b] = torch.tensor(ep.edge_critic["shares"], dtype=dtype)
                critic_fallback[b] = bool(ep.edge_critic.get("fallback", False))
        batch = cls(
            reward=torch.tensor([ep.reward for ep in episodes], dtype=dtype),
            group=torch.tensor(group, dtype=torch.long),
            edge_values=values,
            sender=torch.tensor([[m.sender for m in ep.messages] for ep in episodes], dtype=torch.long),
            receiver=torch.tensor([[m.receiver for m in ep.messages] for ep in episodes], dtype=torch.long),
            edge_turn=torch.tensor([[m.turn for m in ep.messages] for ep in episodes], dtype=torch.long),
            critic_share=critic_share,
            critic_fallback=critic_fallback,
            n_agents=episodes[0].n_agents,
        )
        return batch.to(device) if device is not None else batch

    def to(self, device: str | torch.device) -> "EdgeBatch":
        device = resolve_device(device)
        return EdgeBatch(
            **{
                name: getattr(self, name).to(device)
                for name in (
                    "reward",
                    "group",
                    "edge_values",
                    "sender",
                    "receiver",
                    "edge_turn",
                    "critic_share",
                    "critic_fallback",
                )
            },
            n_agents=self.n_agents,
        )


@dataclass
class EdgeCredit:
    """What an edge estimator returns: credit [B, E] per message (what studies score against
    exact edge Shapley) and its cost counters / fallback counts."""

    credit: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)

    def cpu(self) -> "EdgeCredit":
        return EdgeCredit(self.credit.cpu(), dict(self.metrics))


def informing_credit(edge_credit: torch.Tensor, sender: torch.Tensor, n_agents: int) -> torch.Tensor:
    """[B, E] credit per message, [B, E] its sender -> [B, N]: each agent's informing credit,
    the summed credit of the messages it sent (0 for an agent that sent none)."""
    out = torch.zeros((edge_credit.shape[0], n_agents), dtype=edge_credit.dtype, device=edge_credit.device)
    return out.scatter_add_(1, sender, edge_credit)
