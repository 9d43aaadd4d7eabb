"""The game library: cooperative text games with exact ground-truth credit, by
versioned name. `make_game("vault_v0", n_agents=3, difficulty=1, lazy_agents=[2])`.

A name without its version (`vault`) resolves to the newest version. The crew games (harvest,
squads, beacons, senate, convoy, airport, gloves, projects; `mas_credit.games.crew`) take teams of up to
256 agents and declare their exact credit in closed form (`game.shapley(episode)`).
"""

from __future__ import annotations

import inspect

from mas_credit.games.airport import AirportEnv
from mas_credit.games.base import GameBase, GameParamError, normalise_text
from mas_credit.games.beacons import BeaconsEnv
from mas_credit.games.briefing import BriefingEnv
from mas_credit.games.convoy import ConvoyEnv
from mas_credit.games.council import CouncilEnv
from mas_credit.games.debate import DebateEnv
from mas_credit.games.gloves import GlovesEnv
from mas_credit.games.harvest import HarvestEnv
from mas_credit.games.lookout import LookoutEnv
from mas_credit.games.orchestra import OrchestraEnv
from mas_credit.games.potluck import PotluckEnv
from mas_credit.games.projects import ProjectsEnv
from mas_credit.games.rampart import RampartEnv
from mas_credit.games.relay import RelayEnv
from mas_credit.games.senate import SenateEnv
from mas_credit.games.squads import SquadsEnv
from mas_credit.games.telephone import TelephoneEnv
from mas_credit.games.vault import VaultEnv
from mas_credit.plugins import PluginError, broken_note, load_object, load_plugins

_REGISTRY: dict[str, type[GameBase]] = {}


def register_game(cls: type[GameBase]) -> type[GameBase]:
    """Register a game class under its versioned `name` (usable as a decorator). Registering
    the same class again (a module imported twice) is a no-op; another class under a taken
    name raises: give it a new version (`_v1`) or another name."""
    held = _REGISTRY.get(cls.name)
    if held is not None and (held.__module__, held.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(
            f"game '{cls.name}' is already registered by {held.__module__}.{held.__qualname__}; "
            f"give {cls.__qualname__} a new version (e.g. {cls.name.rsplit('_v', 1)[0]}_v1) or another name"
        )
    _REGISTRY[cls.name] = cls
    return cls


for _cls in (
    VaultEnv,
    PotluckEnv,
    LookoutEnv,
    CouncilEnv,
    RelayEnv,
    OrchestraEnv,
    RampartEnv,
    BriefingEnv,
    TelephoneEnv,
    DebateEnv,
    HarvestEnv,
    SquadsEnv,
    BeaconsEnv,
    SenateEnv,
    ConvoyEnv,
    AirportEnv,
    GlovesEnv,
    ProjectsEnv,
):
    register_game(_cls)


def _plugins() -> None:
    load_plugins("games", register_game)


def list_games() -> list[str]:
    _plugins()
    return sorted(_REGISTRY)


def resolve_game_name(name: str) -> str:
    """`vault` -> newest `vault_vK`; a versioned name is checked; `package.module:Class`
    imports and registers that class (see `mas_credit.plugins`). Unknown names raise
    GameParamError listing the valid ones."""
    if name in _REGISTRY:
        return name
    if ":" in name:
        try:
            cls = load_object(name)
        except PluginError as err:
            raise GameParamError(str(err)) from None
        if not (isinstance(cls, type) and issubclass(cls, GameBase)):
            raise GameParamError(f"'{name}' is not a game class (a subclass of mas_credit.games.base.GameBase)")
        return register_game(cls).name
    _plugins()
    if name in _REGISTRY:
        return name
    versions = sorted((n for n in _REGISTRY if n.rsplit("_v", 1)[0] == name), key=lambda n: int(n.rsplit("_v", 1)[1]))
    if versions:
        return versions[-1]
    raise GameParamError(f"unknown game '{name}'; valid games: {', '.join(list_games())}{broken_note('games')}")


def game_params(name: str) -> list[str]:
    """The keyword parameters a game accepts."""
    cls = _REGISTRY[resolve_game_name(name)]
    names: list[str] = []
    for init in (GameBase.__init__, cls.__init__):
        names += [
            p for p in inspect.signature(init).parameters if p not in ("self", "args", "kwargs") and p not in names
        ]
    return names


def make_game(name: str, **params) -> GameBase:
    """Build a game env by name with its parameters (n_agents, difficulty, lazy_agents, ...)."""
    cls = _REGISTRY[resolve_game_name(name)]
    valid = game_params(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise GameParamError(f"{cls.name}: unknown parameter(s) {unknown}; valid parameters: {', '.join(valid)}")
    return cls(**params)


__all__ = [
    "make_game",
    "list_games",
    "register_game",
    "resolve_game_name",
    "game_params",
    "GameParamError",
    "normalise_text",
    "GameBase",
]
