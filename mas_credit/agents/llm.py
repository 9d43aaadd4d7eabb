"""LLM teams and the LLM critic on the transformers backend.

A team is one base model plus, per `sharing`:
  lora_per_agent  one LoRA adapter per agent on a shared base (peft; the default): every
                  agent's requests go into one generate call, each row with its adapter
  shared          one LoRA adapter that every agent plays (role prompts tell them apart)
  separate        one model copy per agent, each with its own adapter (one call per agent)
A fresh LoRA adapter is the identity, so an untrained team plays the base model.
Each agent has a role (its system prompt); the game's observation is put into the team's
prompt template. A topology (networkx DiGraph: none, chain, star, complete or an edge
list) says whose earlier messages in the episode an agent also sees.

`check_llm_team` validates a team config without loading any model; `LLMTeam` loads it.
This module must not compute rewards or credit.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import torch

from mas_credit.agents.critic import DECODINGS, share_slots
from mas_credit.agents.hf import DTYPES, CharPattern, Generation, check_model_ref, generate, load_model
from mas_credit.agents.protocol import ActRequest, ActResult
from mas_credit.games.base import normalise_text

SHARING = ("lora_per_agent", "shared", "separate")
TOPOLOGIES = ("none", "chain", "star", "complete")
DEFAULT_ROLE = (
    "You are {agent}, one of {n_agents} agents in a cooperative team game. Read your instructions and "
    "answer with one short line in exactly the format they ask for."
)


def request_seed(team_seed: int, requests: list[ActRequest]) -> int:
    """The sampling seed of one act() call: the team seed mixed with a draw from the first
    request's episode generator, so the same requests always sample the same texts."""
    return int(np.random.SeedSequence([int(team_seed), int(requests[0].rng.integers(2**31))]).generate_state(1)[0])


def build_topology(spec, n_agents: int) -> nx.DiGraph:
    """none | chain (0->1->...) | star (0 <-> everyone) | complete | [[from, to], ...]."""
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n_agents))
    if isinstance(spec, str):
        if spec not in TOPOLOGIES:
            raise ValueError(
                f"team.topology '{spec}' is not valid; valid choices: {', '.join(TOPOLOGIES)}, or a list of [from, "
                "to] edges"
            )
        if spec == "chain":
            graph.add_edges_from((i, i + 1) for i in range(n_agents - 1))
        elif spec == "star":
            graph.add_edges_from([(0, i) for i in range(1, n_agents)] + [(i, 0) for i in range(1, n_agents)])
        elif spec == "complete":
            graph.add_edges_from((i, j) for i in range(n_agents) for j in range(n_agents) if i != j)
        return graph
    for edge in spec:
        if (
            not isinstance(edge, (list, tuple))
            or len(edge) != 2
            or not all(isinstance(a, int) and 0 <= a < n_agents for a in edge)
        ):
            raise ValueError(f"team.topology edge {edge!r} must be [from, to] with agents in 0..{n_agents - 1}")
        graph.add_edge(int(edge[0]), int(edge[1]))
    return graph


def turn_order(spec, n_agents: int) -> list[int] | None:
    """The order a topology puts the agents in (lexicographic topological sort), or None
    when it has no edges or a cycle (then the game's own order stands)."""
    graph = build_topology(spec, n_agents)
    if graph.number_of_edges() == 0 or not nx.is_directed_acyclic_graph(graph):
        return None
    return list(nx.lexicographical_topological_sort(graph))


def template_for(prompt_template, game: str, default: str = "{observation}") -> str:
    """The prompt template (or answer prefix) of a game: a mapping is looked up by name with
    and without version (vault_v0, vault), then `default`; a string serves every game."""
    if not isinstance(prompt_template, dict):
        return prompt_template
    for key in (game, game.rsplit("_v", 1)[0], "default"):
        if key in prompt_template:
            return prompt_template[key]
    return default


def check_llm_team(cfg, n_agents: int, sequential: bool) -> None:
    """Every rule a team config must keep, with one-line errors; loads no model."""
    check_model_ref(cfg.model)
    if cfg.sharing not in SHARING:
        raise ValueError(f"team.sharing '{cfg.sharing}' is not valid; valid choices: {', '.join(SHARING)}")
    if cfg.roles and len(cfg.roles) != n_agents:
        raise ValueError(
            f"team.roles has {len(cfg.roles)} system prompts but the game has {n_agents} agents; give one per agent "
            "or none"
        )
    bad = sorted(int(k) for k in cfg.adapters if not 0 <= int(k) < n_agents)
    if bad:
        raise ValueError(
            f"team.adapters names agents {bad} that do not exist in a team of {n_agents} (valid: 0..{n_agents - 1})"
        )
    if cfg.adapters and cfg.sharing == "shared":
        raise ValueError(
            "team.adapters gives an adapter per agent, but sharing: shared has one policy; use lora_per_agent or "
            "separate"
        )
    for agent, path in cfg.adapters.items():
        if not (Path(path).expanduser() / "adapter_config.json").is_file():
            raise ValueError(f"team.adapters.{agent}: '{path}' is not a saved LoRA adapter (no adapter_config.json)")
    graph = build_topology(cfg.topology, n_agents)
    if sequential and not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        raise ValueError(
            f"team.topology has a cycle {[list(e) for e in cycle]}; a turn-based game needs an acyclic topology "
            f"(e.g. chain, or edges that only point forward)"
        )
    if cfg.dtype not in DTYPES:
        raise ValueError(f"team.dtype '{cfg.dtype}' is not valid; valid choices: {', '.join(DTYPES)}")
    if cfg.temperature < 0 or not 0 < cfg.top_p <= 1 or cfg.max_new_tokens < 1:
        raise ValueError(
            f"team sampling: temperature must be >= 0, top_p in (0, 1], max_new_tokens >= 1 "
            f"(got {cfg.temperature}, {cfg.top_p}, {cfg.max_new_tokens})"
        )
    templates = cfg.prompt_template if isinstance(cfg.prompt_template, dict) else {"default": cfg.prompt_template}
    for game, template in templates.items():
        if not isinstance(template, str) or "{observation}" not in template:
            raise ValueError(
                f"team.prompt_template ({game}) must be a string containing {{observation}} (where the game's "
                "instructions go)"
            )
    prefixes = cfg.answer_prefix if isinstance(cfg.answer_prefix, dict) else {"default": cfg.answer_prefix}
    for game, prefix in prefixes.items():
        if not isinstance(prefix, str):
            raise ValueError(f"team.answer_prefix ({game}) must be a string (e.g. 'BRING:'), got {prefix!r}")


class LLMTeam:
    """A team of LLM agents (see the module docstring). `act` answers a batch of requests
    with text, prompt and response token ids and behaviour log-probabilities."""

    kind = "llm"

    def __init__(self, cfg, n_agents: int, sequential: bool = False, device=None, loaded=None):
        check_llm_team(cfg, n_agents, sequential)
        self.cfg = cfg
        self._n_agents = n_agents
        self.seed = int(cfg.seed)
        self.topology = build_topology(cfg.topology, n_agents)
        base = loaded or load_model(cfg.model, device or cfg.device, cfg.dtype)
        self.tokenizer, self.device, self.load_s = base.tokenizer, base.device, base.load_s
        saved = {f"agent_{int(k)}": v for k, v in cfg.adapters.items()}
        names = [f"agent_{i}" for i in range(n_agents)]
        # agent i plays adapter self.adapters[i] on model self.models[self.model_index[i]]
        if cfg.sharing == "lora_per_agent":
            self.models = [self._with_adapters(base.model, names, saved)]
            self.model_index, self.adapters = [0] * n_agents, names
        elif cfg.sharing == "shared":
            self.models = [self._with_adapters(base.model, ["shared"], {})]
            self.model_index, self.adapters = [0] * n_agents, ["shared"] * n_agents
        else:
            copies = [base.model] + [
                load_model(cfg.model, self.device, base.model.dtype).model for _ in range(n_agents - 1)
            ]
            self.models = [self._with_adapters(m, [name], saved) for m, name in zip(copies, names)]
            self.model_index, self.adapters = list(range(n_agents)), names
        self.calls = 0
        self.tokens = 0
        self.greedy = False  # evaluation decodes greedily

    def _with_adapters(self, model, names: list[str], saved: dict):
        """A peft model with one LoRA adapter per name (fresh: the identity; or loaded from `saved`)."""
        from peft import LoraConfig, PeftModel, get_peft_model

        lora = LoraConfig(
            r=self.cfg.lora_r,
            lora_alpha=self.cfg.lora_alpha,
            target_modules=list(self.cfg.lora_targets),
            lora_dropout=0.0,
            bias="none",
            task_type="CAUSAL_LM",
        )
        with torch.random.fork_rng(devices=[]):  # LoRA A matrices are drawn at random: the team seed fixes them
            torch.manual_seed(self.seed)
            if names[0] in saved:
                peft_model = PeftModel.from_pretrained(model, saved[names[0]], adapter_name=names[0], is_trainable=True)
            else:
                peft_model = get_peft_model(model, lora, adapter_name=names[0])
            for name in names[1:]:
                if name in saved:
                    peft_model.load_adapter(saved[name], adapter_name=name, is_trainable=True)
                else:
                    peft_model.add_adapter(name, lora)
        peft_model.eval()
        return peft_model

    @property
    def n_agents(self) -> int:
        return self._n_agents

    def plays_adapter(self, agent: int) -> bool:
        return True

    def learner_agents(self) -> list[int]:
        """The agents that can learn (every agent: each plays a LoRA adapter)."""
        return list(range(self._n_agents))

    def model_for(self, agent: int):
        return self.models[self.model_index[agent]]

    def chat(self, request: ActRequest) -> list[dict]:
        """The chat an agent sees: its role, then the game's observation in the prompt template,
        plus the earlier messages of its in-neighbours in the topology."""
        env, agent = request.env, request.agent
        name = env.possible_agents[agent]
        role = self.cfg.roles[agent] if self.cfg.roles else DEFAULT_ROLE
        system = role.format(agent=name, n_agents=self._n_agents, game=env.name)
        user = template_for(self.cfg.prompt_template, env.name).format(
            observation=request.prompt, agent=name, game=env.name
        )
        sources = set(self.topology.predecessors(agent))
        seen = [
            f"{env.possible_agents[t.agent]} wrote: {t.text}" for t in getattr(env, "history", []) if t.agent in sources
        ]
        if seen:
            user += "\nMessages from your team:\n" + "\n".join(seen)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def answer_prefix(self, game: str) -> str:
        """What this game's answers start with (`team.answer_prefix`; "" for none)."""
        return template_for(self.cfg.answer_prefix, game, default="")

    def act(self, requests: list[ActRequest]) -> list[ActResult]:
        """One generate call for all requests that share a model (per-row adapters)."""
        if not requests:
            return []
        seed = request_seed(self.seed, requests)
        groups: dict[int, list[int]] = {}
        for k, req in enumerate(requests):
            groups.setdefault(self.model_index[req.agent], []).append(k)
        out: list[ActResult | None] = [None] * len(requests)
        for key, members in groups.items():
            chats = [self.chat(requests[k]) for k in members]
            names = [self.adapters[requests[k].agent] for k in members]
            prefixes = [self.answer_prefix(requests[k].env.name) for k in members]
            temperature = 0.0 if self.greedy else self.cfg.temperature
            gens: list[Generation] = generate(
                self.models[key],
                self.tokenizer,
                chats,
                self.cfg.max_new_tokens,
                temperature,
                self.cfg.top_p,
                seed=seed + key,
                adapter_names=names,
                prefills=prefixes if any(prefixes) else None,
            )
            for k, prefix, gen in zip(members, prefixes, gens):
                out[k] = ActResult(
                    text=normalise_text(f"{prefix} {gen.text}" if prefix else gen.text),
                    prompt_ids=gen.prompt_ids,
                    response_ids=gen.response_ids,
                    logprobs=gen.logprobs,
                )
                self.tokens += len(gen.response_ids)
        self.calls += len(requests)
        return out


class LLMCritic:
    """The llm_mca critic on a transformers model: greedy, batched, reads only the prompt.

    `decoding: structured` (default) holds the answer to `critic.share_slots`: after the
    marker and `{` the keys are written for it and the model chooses only the digits of
    each share, so every answer parses strictly. `free` lets it write up to
    `max_new_tokens` tokens (the form before; kept for comparison). Calls go to the model
    `batch_size` episodes at a time.
    """

    kind = "llm"
    SYSTEM = "You judge cooperative team games. Reply with one line of JSON and nothing else."

    def __init__(
        self,
        model: str = "smollm2",
        max_new_tokens: int = 64,
        device=None,
        loaded=None,
        decoding: str = "structured",
        batch_size: int = 16,
        show_actions: bool = False,
        guard: bool = True,
    ):
        if decoding not in DECODINGS:
            raise ValueError(f"critic.decoding '{decoding}' is not valid; valid choices: {', '.join(DECODINGS)}")
        base = loaded or load_model(model, device)
        self.model, self.tokenizer, self.max_new_tokens = base.model, base.tokenizer, int(max_new_tokens)
        self.decoding, self.batch_size, self.show_actions = decoding, max(1, int(batch_size)), bool(show_actions)
        self.guard = bool(guard)
        self.calls = 0
        self._patterns: dict[tuple, CharPattern] = {}

    def _pattern(self, names) -> CharPattern:
        key = tuple(names)
        if key not in self._patterns:
            self._patterns[key] = CharPattern(self.tokenizer, share_slots(list(names)))
        return self._patterns[key]

    def score(self, requests) -> list[str]:
        """Greedy answers, each begun with its request's marker and an opening brace (so the
        model writes the JSON object where the parser reads it)."""
        out = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            chats = [[{"role": "system", "content": self.SYSTEM}, {"role": "user", "content": r.prompt}] for r in chunk]
            starts = [f"{r.marker} {{" for r in chunk]
            patterns = [self._pattern(r.keys) for r in chunk] if self.decoding == "structured" else None
            budget = max(len(p.slots) for p in patterns) + 1 if patterns else self.max_new_tokens
            self.calls += len(chats)
            gens = generate(
                self.model, self.tokenizer, chats, budget, temperature=0.0, prefills=starts, patterns=patterns
            )
            out += [prefix + g.text for prefix, g in zip(starts, gens)]
        return out
