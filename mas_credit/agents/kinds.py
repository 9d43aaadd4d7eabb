"""Team kinds: the built-in ones and those plug-ins add (`mas_credit.plugins`, entry-point
group `mas_credit.teams`, or a `package.module:Object` reference as the kind's name).

A plug-in kind (a `TeamKind`) may be a whole team (`team: {kind: reader, params: {...}}`)
or one member of a mixed team (`members: [{kind: reader, care: 0.8}, {kind: tabular}]`).
"""

from __future__ import annotations

from mas_credit.agents.protocol import TeamKind
from mas_credit.agents.served import OPENAI
from mas_credit.plugins import PluginError, load_object, load_plugins

BUILTIN_KINDS = ("scripted", "llm", "vllm", "mixed")
"""the kinds of `team.kind` built into mas-credit"""
MEMBER_KINDS = ("scripted", "tabular", "llm")
"""the built-in kinds of a mixed team's members"""
LEARNER_KINDS = ("tabular", "llm")
"""the member kinds that can learn (when not frozen); plug-in kinds only play"""
SERVED_KINDS = {"openai": OPENAI}
"""built-in kinds written as `TeamKind`s: a whole team (`team.params`) or a mixed team's member"""
_PLUGGED: dict[str, TeamKind] = {}


def register_team_kind(kind: TeamKind) -> TeamKind:
    """Register a plug-in team kind under `kind.name`. The same kind again is a no-op;
    another kind under a taken (or built-in) name raises."""
    if not isinstance(kind, TeamKind):
        raise PluginError(f"a team kind plug-in must be a mas_credit.agents.TeamKind, got {type(kind).__name__}")
    if kind.name in BUILTIN_KINDS + MEMBER_KINDS + tuple(SERVED_KINDS):
        raise PluginError(f"team kind '{kind.name}' is built into mas-credit; give the plug-in kind another name")
    held = _PLUGGED.get(kind.name)
    if held is not None and held != kind:
        raise PluginError(
            f"team kind '{kind.name}' is already registered by another plug-in; give this one another name"
        )
    _PLUGGED[kind.name] = kind
    return kind


def plugged_kinds() -> list[str]:
    """The kinds written as `TeamKind`s: the served ones, then the plug-ins'."""
    load_plugins("teams", register_team_kind)
    return [*SERVED_KINDS, *sorted(_PLUGGED)]


def plugged_kind(name: str) -> TeamKind | None:
    """The plug-in kind called `name` (or named by a `package.module:Object` reference);
    None if no plug-in provides it."""
    if ":" in str(name):
        kind = load_object(name)
        if not isinstance(kind, TeamKind):
            raise PluginError(f"'{name}' is a {type(kind).__name__}, not a mas_credit.agents.TeamKind")
        return register_team_kind(kind)
    load_plugins("teams", register_team_kind)
    return SERVED_KINDS.get(name) or _PLUGGED.get(name)


def check_options(kind: TeamKind, options: dict, n_agents: int, where: str) -> None:
    """Run a plug-in kind's own check; its message is prefixed with where the options are."""
    try:
        kind.check(options, n_agents)
    except ValueError as err:
        raise ValueError(f"{where} ({kind.name}): {err}") from None
