"""Credit estimators, registered by name. Each is one pure `@torch.no_grad()` function

    estimator(batch: CreditBatch, cfg) -> Credit      credit [B, N], advantage [B, T]

with a typed config dataclass (its knobs, defaults in one place) and a `needs` rule
that says what must be computed from the episodes first (coalition values, COMA's
alternative values, critic shares, tree fan-out rollouts), so a run only pays for
what its estimators use. Formulas and sources: docs/estimators.md and each
module's docstring.

    est = get_estimator("sharp")
    needs = est.needs(cfg, n_agents)          # -> Needs; fill with counterfactual.fill_needs
    credit = est(batch, cfg)                  # cfg: None (defaults) | dict | EstimatorConfig | est.Config(...)

Registering a name twice raises; an unknown name lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from dataclasses import dataclass, fields
from typing import Any, Callable

import torch
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from mas_credit.plugins import broken_note, load_object, load_plugins
from mas_credit.types import Credit, CreditBatch, resolve_device


@dataclass(frozen=True)
class Needs:
    """What an estimator needs computed from the episodes before it runs.

    coalitions    coalition bitmasks whose v(S) must be in the batch (empty: none)
    kind          how those were chosen: all | loo | sampled (for reports)
    mode, k       counterfactual mode (replay | resample) and re-runs per value
    alternatives  COMA: re-draws per agent of its own actions (0: none)
    critic        the critic must have scored every episode
    tree_fanout   the episodes must come from `rollout.collect_tree(fanout=...)`
    groups        its advantage is normalised within task groups (needs group_size >= 2)
    """

    coalitions: tuple = ()
    kind: str | None = None
    mode: str = "replay"
    k: int = 1
    alternatives: int = 0
    critic: bool = False
    tree_fanout: tuple | None = None
    groups: bool = False


@dataclass(frozen=True)
class Estimator:
    """A registered estimator: its function, config class and needs rule."""

    name: str
    fn: Callable[[CreditBatch, Any], Credit]
    Config: type
    needs_rule: Callable[[Any, int], Needs]
    doc: str = ""
    granularity: str = "unspecified"
    """the survey's assignment granularity (token, segment, step, turn, multi-agent; or episode for baselines)"""
    family: str = "unspecified"
    """the survey's methodology family (Monte Carlo, temporal difference, model-based / LLM critic,
    game-theoretic, information-theoretic) and the method's own label in its Table 9"""

    def make_config(self, cfg=None):
        """None -> defaults; a dict of knobs; an `EstimatorConfig` (device + params); or a Config."""
        if isinstance(cfg, self.Config):
            out = cfg
        else:
            values: dict = {}
            if cfg is None:
                pass
            elif isinstance(cfg, dict):
                values = dict(cfg)
            elif hasattr(cfg, "params") and hasattr(cfg, "device"):
                values = {"device": cfg.device, **dict(cfg.params)}
            else:
                raise TypeError(
                    f"{self.name}: cfg must be None, a dict, an EstimatorConfig or {self.name}'s Config, got "
                    f"{type(cfg).__name__}"
                )
            out = self._structured(values)
        for knob in fields(out):  # a rule, not a list: no float knob of any estimator takes NaN or inf
            value = getattr(out, knob.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(
                    f"estimator '{self.name}': knob {knob.name} must be a finite number, got {value}; give a number "
                    f"(its default is {knob.default!r})"
                )
        if out.device not in ("auto", "cpu", "cuda") and not str(out.device).startswith("cuda:"):
            raise ValueError(
                f"estimator '{self.name}': device '{out.device}' is not valid; valid choices: auto, cpu, cuda"
            )
        check = getattr(out, "check", None)
        if check is not None:
            check()
        return out

    def _structured(self, values: dict):
        """The Config from knob values, type-checked and coerced by OmegaConf (YAML's 1 for a
        float knob, a list for a tuple); its errors become one line naming the knob."""
        try:
            return OmegaConf.to_object(OmegaConf.merge(_typed_defaults(self.Config), values))
        except ConfigKeyError:
            valid = [f.name for f in fields(self.Config)]
            unknown = sorted(set(values) - set(valid))
            raise ValueError(
                f"estimator '{self.name}' has no knob {', '.join(unknown)}; valid knobs: {', '.join(valid)}"
            ) from None
        except ValidationError as err:
            knob = next(f for f in fields(self.Config) if f.name == str(err.full_key).split("[")[0])
            default = knob.default if knob.default is not dataclasses.MISSING else knob.default_factory()
            raise ValueError(
                f"estimator '{self.name}': knob {knob.name} must be {type(default).__name__} (like {default!r}), "
                f"got {values[knob.name]!r}"
            ) from None

    def needs(self, cfg=None, n_agents: int = 3) -> Needs:
        return self.needs_rule(self.make_config(cfg), int(n_agents))

    def __call__(self, batch: CreditBatch, cfg=None) -> Credit:
        cfg = self.make_config(cfg)
        batch = batch.to(resolve_device(cfg.device))
        with torch.no_grad():
            return self.fn(batch, cfg)


@functools.cache
def _typed_defaults(config: type):
    """OmegaConf's typed config of an estimator Config's defaults, built once per class."""
    return OmegaConf.structured(config)


_REGISTRY: dict[str, Estimator] = {}


def register_estimator(
    name: str,
    config: type,
    needs: Callable[[Any, int], Needs],
    granularity: str = "unspecified",
    family: str = "unspecified",
):
    """Decorator: register `fn(batch, cfg) -> Credit` under `name`. `granularity` and `family`
    place it in the survey's taxonomy; every run's reporting checklist quotes them."""

    def wrap(fn):
        held = _REGISTRY.get(name)
        if held is not None and (held.fn.__module__, held.fn.__qualname__) == (fn.__module__, fn.__qualname__):
            return fn  # the same function again (its module imported twice)
        if held is not None:
            raise ValueError(
                f"estimator '{name}' is already registered by {held.fn.__module__}.{held.fn.__qualname__}; "
                f"pick another name"
            )
        _REGISTRY[name] = Estimator(
            name=name,
            fn=fn,
            Config=config,
            needs_rule=needs,
            doc=sys.modules[fn.__module__].__doc__ or "",
            granularity=granularity,
            family=family,
        )
        return fn

    return wrap


def lookup(registry: dict, name: str, group: str, what: str, decorator: str) -> Estimator:
    """The estimator registered as `name` in `registry` (agent or edge estimators): a
    `package.module:function` reference imports that module, whose `decorator` registers it; a
    name not yet registered loads the entry points of plug-in group `group` first (see
    `mas_credit.plugins`); an unknown one lists the valid names."""
    if name not in registry and ":" in name:
        fn = load_object(name)
        found = next((est for est in registry.values() if est.fn is fn or est is fn), None)
        if found is None:
            raise ValueError(f"'{name}' is not a registered {what}; decorate it with {decorator}(name, Config, needs)")
        return found
    if name not in registry:
        load_plugins(group, lambda obj: None)  # the decorator already ran on import
    if name not in registry:
        raise ValueError(f"unknown {what} '{name}'; valid {what}s: {', '.join(sorted(registry))}{broken_note(group)}")
    return registry[name]


def get_estimator(name: str) -> Estimator:
    """The estimator registered as `name`; `package.module:function` imports that module
    (its `register_estimator` registers it; see `mas_credit.plugins`)."""
    return lookup(_REGISTRY, name, "estimators", "estimator", "mas_credit.estimators.register_estimator")


def list_estimators() -> list[str]:
    load_plugins("estimators", lambda obj: None)
    return sorted(_REGISTRY)


# Importing the modules registers them.
from mas_credit.estimators import (  # noqa: E402,F401
    c3,
    coma,
    dr_mas,
    edges,
    grpo,
    llm_mca,
    loo,
    m_grpo,
    sampling,
    shapley,
    sharp,
    uniform,
)

__all__ = ["Needs", "Estimator", "register_estimator", "get_estimator", "list_estimators"]
