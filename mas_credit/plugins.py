"""Outside code in mas-credit: games, estimators and team kinds from other packages.

Two ways in, both loaded in every process that looks a name up (the CLI, `report`, batch
worker processes, Ray tasks), because lookups load them, not a startup hook:

- entry points: a package declares
      [project.entry-points."mas_credit.games"]       tally = "my_pkg:TallyEnv"
      [project.entry-points."mas_credit.estimators"]  last_word = "my_pkg.credit:last_word"
      [project.entry-points."mas_credit.teams"]       reader = "my_pkg:READER"
      [project.entry-points."mas_credit.edge_estimators"]  first_word = "my_pkg:first_word"
  (a game class, an estimator registered with `register_estimator`, a `TeamKind`, an edge
  estimator registered with `estimators.edges.register_edge_estimator`, or a module whose
  import registers them); once it is installed, `game: tally_v0`, `estimators: [last_word]`,
  `team: {kind: reader}` or `edges: {estimators: [first_word]}` find it;
- a `package.module:Object` reference anywhere a game, estimator, edge estimator or team kind
  is named in YAML (`game: {use: "my_pkg:TallyEnv"}`, `team: {kind: "my_pkg:READER"}`); the module
  must be importable in every process.

Registering the same object twice is a no-op; two different objects under one name is an
error (see `games.register_game`, `estimators.register_estimator`,
`agents.register_team_kind`).

A plug-in whose import raises (anything, not only ImportError) does not take the other verbs
down with it: it is skipped with one warning line naming it (once per process), the names it
would have provided are simply absent, and a lookup of a name nobody provides names the broken
plug-ins of that group in its error (`broken_note`).
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points

GROUPS = {
    "games": "mas_credit.games",
    "estimators": "mas_credit.estimators",
    "teams": "mas_credit.teams",
    "edge_estimators": "mas_credit.edge_estimators",
}
_loaded: set[str] = set()
_broken: dict[str, dict[str, str]] = {}
"""plug-in group kind -> {entry-point name: why it failed to load}"""


class PluginError(ValueError):
    """A plug-in could not be loaded; the message names it and what to check."""


def load_object(ref: str):
    """The object of a `package.module:Object` reference."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise PluginError(f"'{ref}' is not a plug-in reference; write package.module:Object")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise PluginError(
            f"'{ref}': cannot import {module_name} ({err}); install the package that provides it "
            f"(pip install -e <its folder>) or put it on PYTHONPATH"
        ) from None
    except Exception as err:  # noqa: BLE001 - the module's own bug, named in one line
        raise PluginError(
            f"'{ref}': importing {module_name} raised {type(err).__name__}: {one_line(err)}; fix that module"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"'{ref}': {module_name} has no {attr}")
        obj = getattr(obj, part)
    return obj


def load_plugins(kind: str, register) -> None:
    """Load every entry point of group `GROUPS[kind]` once per process; `register(obj)` is
    called with each loaded object (a module is taken to have registered itself)."""
    if kind in _loaded:
        return
    _loaded.add(kind)
    broken = _broken.setdefault(kind, {})
    for ep in entry_points(group=GROUPS[kind]):
        try:
            obj = ep.load()
        except Exception as err:  # noqa: BLE001 - a broken plug-in must name itself, not crash every verb
            broken[ep.name] = (
                f"plug-in '{ep.name}' ({ep.value}, group {ep.group}) failed to load: "
                f"{type(err).__name__}: {one_line(err)}"
            )
            print(f"mas-credit: warning: {broken[ep.name]}; skipped", file=sys.stderr)
            continue
        if not isinstance(obj, type(importlib)):
            register(obj)


def broken_note(kind: str) -> str:
    """For an unknown-name error: the plug-ins of group `kind` that failed to load (they may be
    the ones meant), or ""."""
    broken = _broken.get(kind) or {}
    return "".join(f"; {why}" for why in broken.values())


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
