"""Every YAML in the repository loads into its dataclass; every bad-input case gives
a one-line error naming the key or file (exit code 2 on the CLI)."""

import dataclasses
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mas_credit.cli import main
from mas_credit.config import (
    OPTION_SCHEMA,
    SHIPPED,
    ConfigError,
    ExperimentConfig,
    GameConfig,
    _check_against,
    _read_yaml,
    check_expanded_size,
    load_experiment,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "path",
    sorted(p for folder in OPTION_SCHEMA for p in (SHIPPED / folder).glob("*.yaml")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_every_option_file_loads_into_its_dataclass(path):
    schema = OPTION_SCHEMA[path.parent.name]
    obj = OmegaConf.to_object(_check_against(schema, _read_yaml(path), str(path)))
    assert isinstance(obj, schema)


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_experiment_loads(path, tmp_path):
    if "grid" in _read_yaml(path):  # a batch: every run it would start must load
        from mas_credit.batch import expand
        from mas_credit.config import BatchConfig, load_batch

        batch = load_batch(path)
        runs = expand(batch, tmp_path)
        grids = [batch.grid, *batch.extra_grids]
        assert isinstance(batch, BatchConfig) and len(runs) == sum(math.prod(len(v) for v in g.values()) for g in grids)
        for run in runs:
            load_experiment(run["base"], run["overrides"])
        return
    cfg = load_experiment(path)
    assert isinstance(cfg, ExperimentConfig) and cfg.games and all(isinstance(g, GameConfig) for g in cfg.games)


def test_overrides_and_option_switch():
    cfg = load_experiment(
        ROOT / "experiments/demo.yaml", ["n_tasks=3", "games.1.difficulty=2", "team.skills=[1,1,0.5]", "seeds=[4]"]
    )
    assert cfg.n_tasks == 3 and cfg.games[1].difficulty == 2 and cfg.games[1].lazy_agents == [2]
    assert cfg.team.skills == [1.0, 1.0, 0.5] and cfg.team.malformed_rate == 0.05 and cfg.seeds == [4]
    cfg = load_experiment(ROOT / "experiments/demo.yaml", ["team=scripted_slacker", "game=potluck"])
    assert cfg.team.lazy == [2] and [g.name for g in cfg.games] == ["potluck_v0"]
    cfg = load_experiment(
        ROOT / "experiments/demo.yaml",
        ["game.difficulty=3", "estimators=[c3]", "estimators.0.params.fanout=[2,2]", "team.skills=[0.9,0.25,0.7]"],
    )
    assert [g.difficulty for g in cfg.games] == [3, 1, 1] and cfg.team.skills == [0.9, 0.25, 0.7]
    assert cfg.estimators[0].label == "c3" and cfg.estimators[0].params == {"fanout": [2, 2]}


def test_nested_params_merge_key_by_key():
    cfg = load_experiment(ROOT / "experiments/council_demo.yaml", ["games.0.params.quota=5"])
    assert dict(cfg.games[0].params) == {"weights": [2, 2, 2, 1], "quota": 5}


def test_config_is_frozen():
    cfg = load_experiment(ROOT / "experiments/demo.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'n_tasks'"):
        cfg.n_tasks = 5
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'skills'"):
        cfg.team.skills = [1, 1, 1]


def write(tmp_path, text, name="exp.yaml"):
    for folder in OPTION_SCHEMA:
        (tmp_path / folder).mkdir(exist_ok=True)
        for src in (SHIPPED / folder).glob("*.yaml"):
            (tmp_path / folder / src.name).write_text(src.read_text())
    (tmp_path / "experiments").mkdir(exist_ok=True)
    path = tmp_path / "experiments" / name
    path.write_text(text)
    return path


BAD = [
    ("name: x\ngame: vault\nteam: scripted_trio\nn_taskz: 3\n", [], "unknown key 'n_taskz'; valid keys: name, games"),
    ("name: x\ngame: {use: vault, n_agnets: 4}\nteam: scripted_trio\n", [], "unknown key 'games.0.n_agnets'"),
    ("name: x\ngame: vault\nteam: {use: scripted_trio, skill: [1]}\n", [], "unknown key 'team.skill'"),
    ("name: x\ngame: vault\nteam: scripted_trio\nn_tasks: many\n", [], "key 'n_tasks'"),
    ("name: x\ngame: {use: vault, difficulty: hard}\nteam: scripted_trio\n", [], "key 'games.0.difficulty'"),
    (
        "name: x\ngame: vaultt\nteam: scripted_trio\n",
        [],
        "unknown option 'vaultt' (no file games/vaultt.yaml); valid options: briefing, council",
    ),
    ("name: x\ngame: vault\nteam: trio\n", [], "unknown option 'trio'"),
    ("name: x\ngame: vault\nteam: scripted_trio\nestimators: [sharpp]\n", [], "unknown option 'sharpp'"),
    ("name: x\ngame: vault\nteam: scripted_trio\n", ["team.skills=[1,1]"], "team.skills has 2 values but games.0"),
    ("name: x\ngame: {use: vault, lazy_agents: [7]}\nteam: scripted_trio\n", [], "games.0: vault_v0: lazy_agents [7]"),
    (
        "name: x\ngame: {use: council, params: {weights: [1]}}\nteam: scripted_quartet\n",
        [],
        "weights must be a list of 4",
    ),
    ("name: x\ngame: {use: relay, params: {speed: 3}}\nteam: scripted_trio\n", [], "unknown parameter(s) ['speed']"),
    ("name: x\ngame: vault\nteam: scripted_trio\n", ["n_tasks"], "must look like key=value"),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["team.skills=[1,1,2]"],
        "team.skills must be a non-empty list of probabilities",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["team.kind=gpt"],
        "team.kind 'gpt' is not available; valid kinds: scripted, llm, vllm",
    ),
    (
        "name: x\ngame: vault\nteam: smollm_trio\n",
        ["team.model=/no/such/model"],
        "team.model '/no/such/model' does not exist",
    ),
    (
        "name: x\ngame: vault\nteam: smollm_trio\n",
        ["team.adapters={5: /tmp/a}"],
        "team.adapters names agents [5] that do not exist in a team of 3",
    ),
    ("name: x\ngame: relay\nteam: smollm_trio\n", ["team.topology=[[0,1],[1,2],[2,0]]"], "team.topology has a cycle"),
    ("name: x\ngame: vault\nteam: smollm_trio\n", ["team.sharing=pooled"], "team.sharing 'pooled' is not valid"),
    (
        "name: x\ngame: vault\nteam: smollm_trio\n",
        ["team.roles=[a,b]"],
        "team.roles has 2 system prompts but the game has 3 agents",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["critic.kind=llm", "critic.model=./nowhere"],
        "team.model './nowhere' does not exist",
    ),
    ("name: x\ngame: vault\nteam: scripted_trio\n", ["games.4.n_agents=2"], "'games.4' is not an index"),
    ("name: x\ngame: [vault\n", [], "not valid YAML"),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["critic.kind=openai", "critic.base_url=localhost:8000"],
        "critic: base_url must be the server's http(s) URL, e.g. http://127.0.0.1:8000/v1; got 'localhost:8000'",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["name.first=2"],
        "override 'name.first=2': 'name' is a value, not a section",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["team.skills.1=0.5"],
        "team: 'skills' is a list in the option file but the override gives a dict; set the whole value (e.g. "
        "skills=[0.9, 0.8, 0.7])",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["games.first.difficulty=2"],
        "'games.first' is not an index of a list of 1",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["seeds=[0, {a"],
        "override 'seeds=[0, {a': value is not valid YAML",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\nestimators: [c3]\n",
        ["estimators.0.params.samples=2.5"],
        "estimators.0: estimator 'c3': knob samples must be int (like 1), got 2.5",
    ),
    (
        "name: x\ngame: relay\nteam: smollm_trio\n",
        ["team.topology=ring"],
        "team.topology 'ring' is not valid; valid choices: none",
    ),
    (
        "name: x\ngame: relay\nteam: smollm_trio\n",
        ["team.topology=[[0,5]]"],
        "team.topology edge [0, 5] must be [from, to] with agents in 0..2",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["estimators=[]"],
        "estimators is empty; name at least one option from estimators/ (amortised, banzhaf, c3, ",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["seeds=5"],
        "key 'seeds': expected a list, got 5; write it in brackets, e.g. seeds=[5]",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["estimators=[{use:sharp}]"],
        "needs 'use: <option>' naming a file in estimators/ ('use:sharp' needs a space after its colon)",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["seeds=[0,-1,4294967296]"],
        "seeds [-1, 4294967296] are out of range; a seed is an integer in [0, 4294967295]",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["team.seed=-1"],
        "team.seed must be an integer in [0, 4294967295], got -1",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\n",
        ["critic.seed=-3"],
        "critic.seed must be an integer in [0, 4294967295], got -3",
    ),
    (
        "name: x\ngame: vault\ngame: lookout\n",
        [],
        "exp.yaml: not valid YAML (line 3): key 'game' is given twice (first on line 2); keep one",
    ),
    ("name: x\ngames: [{use: vault, difficulty: 1, difficulty: 2}]\n", [], "key 'difficulty' is given twice"),
    ("name: ../../elsewhere\ngame: vault\n", [], "name '../../elsewhere' must be a plain folder name (outputs go to"),
    ("name: x\ngame: vault\n", ["name=.."], "name '..' must be a plain folder name"),
    (
        "name: x\ngame: vault\n",
        ["edges.mode=replay", "edges.counterfactual=x"],
        "unknown key 'edges.counterfactual'; valid keys: estimators, mode",
    ),
    ("name: x\ngame: vault\n", ["max_memory_gb=0"], "max_memory_gb must be > 0 (the memory, in GB, a study's"),
    ("- just\n- a list\n", [], "must be a mapping"),
    ("", [], "exp.yaml: the file is empty; give its keys (experiments/demo.yaml shows an experiment)"),
    ("# nothing but a comment\n", [], "the file is empty"),
    ("name: x\ngame: vault\nteam: scripted_trio\nestimators: [{use: shapley, device: tpu}]\n", [], "device 'tpu'"),
    (
        "name: x\ngame: vault\nteam: scripted_trio\nestimators: [{use: shapley, device: 'cuda:x'}]\n",
        [],
        "device 'cuda:x' is not valid; valid choices: auto, cpu, cuda, cuda:N",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\nestimators: [sharp]\n",
        ["estimators.0.params.kapa=0.2"],
        "estimators.0: estimator 'sharp' has no knob kapa; valid knobs: device, counterfactual",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\nestimators: [dr_mas]\n",
        ["estimators.0.params.row_stats=rows"],
        "row_stats 'rows' is not valid; valid choices: steps, trajectories",
    ),
    (
        "name: x\ngames: [{use: vault, params: {difficulty: 1}}]\n",
        [],
        "game vault_v0: params.difficulty is a field of the game option itself; write `difficulty: ...` beside",
    ),
    (
        "name: x\ngame: vault\nteam: scripted_trio\nestimators: [{use: grpo, name: grpoo}]\n",
        [],
        "unknown estimator 'grpoo'; valid estimators: amortised, banzhaf, c3",
    ),
]


@pytest.mark.parametrize("text,overrides,message", BAD)
def test_bad_experiments_raise_one_line_errors(tmp_path, text, overrides, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_experiment(path, overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "mas_credit.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("text,overrides,message", BAD)
@pytest.mark.reliability(
    "a config mistake: unknown key or option, wrong type, empty file, bad YAML, a key given twice, a run name "
    "with a path in it, a seed out of range",
    "one line `mas-credit: error: <file>: ...` naming the key or file and the fix; exit 2",
)
def test_cli_exit_code_2_with_one_line(tmp_path, capsys, text, overrides, message):
    """The CLI's entry point in this process (a subprocess per case costs 4 s of imports; the
    study and config show tests run the real command line)."""
    path = write(tmp_path, text)
    assert main(["config", "show", str(path), *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mas-credit: error: ") and err.count("\n") == 1
    assert message in err and "Traceback" not in err


@pytest.mark.reliability(
    "a config file that is not UTF-8", "`<file>: not UTF-8 text (byte 9); save the file as UTF-8`; exit 2"
)
def test_a_config_that_is_not_utf8_is_one_line(tmp_path, run_main):
    path = write(tmp_path, "")
    path.write_bytes(b"name: caf\xe9\ngame: vault\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: not UTF-8 text \(byte 9\); save the file as UTF-8"):
        load_experiment(path)
    code, _, err = run_main("study", path)
    assert code == 2 and err.count("\n") == 1 and "not UTF-8" in err


def alias_bomb(levels: int) -> str:
    """Nested YAML aliases: `levels` lists of nine references to the list before, 9**levels
    strings in all from a few hundred bytes."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]" for k in range(1, levels)]
    return "\n".join(lines)


@pytest.mark.reliability(
    "a YAML alias bomb (a few hundred bytes of nested aliases) in a config file, an override or "
    "`play --param`; a config file over 1 MB",
    "one line naming the file or key and the bound, at once, with no memory growth; exit 2",
)
def test_an_alias_bomb_or_a_huge_file_is_one_line_before_anything_expands_it(tmp_path, run_main):
    bomb = alias_bomb(9)  # 9**9 = 387 million strings
    assert len(bomb) < 600
    notes = "\n".join("  " + line for line in bomb.splitlines())
    path = write(tmp_path, f"name: x\ngame: vault\nnotes:\n{notes}\n")
    for argv in (
        ("study", path),
        ("study", write(tmp_path, "name: x\ngame: vault\n", "ok.yaml"), "seeds=" + bomb_inline(8)),
        ("play", "vault", "--param", "weights=" + bomb_inline(8)),
    ):
        code, _, err = run_main(*argv)
        assert code == 2 and err.count("\n") == 1 and "expands to more than 200,000 values" in err, err
    huge = write(tmp_path, "name: x\ngame: vault\n# " + "x" * 1_000_001 + "\n", "huge.yaml")
    code, _, err = run_main("config", "show", huge)
    assert code == 2 and err.count("\n") == 1 and "bytes is more than a config may hold (1,000,000)" in err
    # the bound is above any real config: a list of 100,000 values passes the size check
    check_expanded_size(list(range(100_000)), "x")


def bomb_inline(levels: int) -> str:
    """The bomb as one flow-style YAML value (for an override)."""
    text = '&a0 ["lol", "lol", "lol"]'
    for k in range(1, levels):
        text = f"[{text}, " + ", ".join([f"*a{k - 1}"] * 8) + "]"
        text = f"&a{k} {text}"
    return text


def test_cli_missing_file(run_main):
    code, _, err = run_main("config", "show", ROOT / "experiments" / "nope.yaml")
    assert code == 2 and "config file not found" in err and "nope.yaml" in err


def test_cli_config_show_prints_resolved_config(run_main):
    """The real command line once (from the repository root, a relative path), then in this process."""
    out = run_cli("config", "show", "experiments/demo.yaml", "n_tasks=5")
    assert out.returncode == 0, out.stderr
    assert "n_tasks: 5" in out.stdout and "name: lookout_v0" in out.stdout and "malformed_rate: 0.05" in out.stdout
    import yaml

    team = yaml.safe_load(out.stdout)["team"]  # a scripted team: no LLM fields
    assert set(team) == {"kind", "skills", "lazy", "saboteurs", "malformed_rate", "seed"}
    mixed = yaml.safe_load(run_main("config", "show", ROOT / "experiments" / "quickstart.yaml")[1])["team"]
    assert {"members", "lora_r", "answer_prefix", "temperature"} <= set(mixed) and "skills" not in mixed


def test_config_show_says_what_train_would_refuse(run_main):
    """train.* is checked only by `train`; `config show` of a team that learns says what it would
    refuse, as a comment (the config is still valid for a study, so the exit code stays 0)."""
    quickstart = ROOT / "experiments" / "quickstart.yaml"
    code, out, _ = run_main("config", "show", quickstart, "train.lr=-1")
    refusals = [line for line in out.splitlines() if line.startswith("# mas-credit train would refuse")]
    assert code == 0 and len(refusals) == 1 and "train.lr, clip_eps and max_grad_norm must be > 0" in refusals[0]
    assert "lr: -1" in out
    for path in (quickstart, ROOT / "experiments" / "demo.yaml"):  # a valid training config; a scripted study
        code, out, _ = run_main("config", "show", path)
        assert code == 0 and "would refuse" not in out


def test_no_option_file_repeats_a_default():
    """The dataclasses hold every default: an option file gives its identity (a game's or an
    estimator's `name`, a team's `kind`), what it changes, and its citation in comments.
    Every option file loads, and every estimator has one named after it."""

    from mas_credit.config import EstimatorConfig, TeamConfig, load_option
    from mas_credit.estimators import get_estimator, list_estimators

    def defaults(cls):
        return {
            f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        }

    identity = {"games": {"name"}, "agents": {"kind"}, "estimators": {"name"}}
    schema = {"games": GameConfig, "agents": TeamConfig, "estimators": EstimatorConfig}
    seen = set()
    for folder in ("games", "agents", "estimators"):
        for path in sorted((SHIPPED / folder).glob("*.yaml")):
            data = _read_yaml(path)
            top = defaults(schema[folder])
            repeated = [
                k
                for k, v in data.items()
                if k not in identity[folder]
                and k != "params"
                and k in top
                and (list(v) if isinstance(v, tuple) else v) == (list(top[k]) if isinstance(top[k], tuple) else top[k])
            ]
            if folder == "estimators":
                est = get_estimator(data["name"])
                knobs = defaults(est.Config)
                repeated += [
                    f"params.{k}"
                    for k, v in (data.get("params") or {}).items()
                    if k in knobs
                    and (list(v) if isinstance(v, list) else v)
                    == (list(knobs[k]) if isinstance(knobs[k], tuple) else knobs[k])
                ]
                est.make_config(
                    EstimatorConfig(
                        name=data["name"], device=data.get("device", "auto"), params=dict(data.get("params") or {})
                    )
                )
                seen.add(path.stem if path.stem == data["name"] else None)
            assert not repeated, (
                f"{path.relative_to(SHIPPED)} repeats the defaults of {repeated}; remove them (config show prints "
                "resolved values)"
            )
            load_option(SHIPPED, folder, path.stem, str(path))
    assert set(list_estimators()) <= seen


def test_a_numbered_cuda_device_is_a_valid_estimator_device():
    """cuda:N passes validation as it passes the estimators (whether that GPU exists is the
    estimator's check when it runs)."""
    cfg = load_experiment(ROOT / "experiments" / "demo.yaml", ["estimators=[{use: shapley, device: 'cuda:1'}]"])
    assert cfg.estimators[0].device == "cuda:1"


@pytest.mark.parametrize("field", ["share_prompts", "fuse_reference"])
@pytest.mark.parametrize("spelled", ["on", "off", "auto"])
def test_switches_on_and_off_survive_yaml_booleans(tmp_path, spelled, field):
    """YAML 1.1 reads `on`/`off` as booleans: on the command line, in a file and in a run's
    resolved config.yaml they still mean the documented choices."""
    from mas_credit.config import load_resolved, to_yaml, validate_train

    base = ROOT / "experiments" / "train_trio.yaml"
    from_cli = load_experiment(base, [f"train.{field}={spelled}"])
    path = write(tmp_path, base.read_text() + f"  {field}: {spelled}\n")
    from_file = load_experiment(path)
    (tmp_path / "config.yaml").write_text(to_yaml(from_cli))
    for cfg in (from_cli, from_file, load_resolved(tmp_path / "config.yaml")):
        assert getattr(cfg.train, field) == spelled
        validate_train(cfg, "exp.yaml")


def float_fields(schema, prefix=""):
    """Every float field of a config schema and of the schemas inside it, as dotted paths."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(schema)
    out = []
    for f in dataclasses.fields(schema):
        kind = hints[f.name]
        if kind is float:
            out.append(prefix + f.name)
        elif dataclasses.is_dataclass(kind):
            out += float_fields(kind, f"{prefix}{f.name}.")
        elif typing.get_origin(kind) in (list, typing.List) and dataclasses.is_dataclass(typing.get_args(kind)[0]):
            out += float_fields(typing.get_args(kind)[0], f"{prefix}{f.name}.0.")
    return out


@pytest.mark.reliability(
    "a NaN or infinite number anywhere in a config (`train.lr: .nan`, a game's weights, an estimator knob)",
    "one line naming the field: `<field> must be a finite number, got nan`; exit 2, before any work",
)
def test_no_float_field_of_any_schema_takes_nan_or_inf(tmp_path):
    """A rule, not a list (issue 43): every float field of the experiment schema, its games, team, critic,
    train and edges, and of the batch schema, refuses NaN and inf with one line naming it; so do floats
    inside parameter maps (a game's weights, a member's temperature, an estimator's knob)."""
    from mas_credit.config import BatchConfig, ExperimentConfig, load_batch

    fields = float_fields(ExperimentConfig)
    assert {"train.lr", "train.kl_coef", "coalition_noise", "team.temperature", "critic.accuracy"} <= set(fields)
    for path in fields:
        for bad in (".nan", ".inf", "-.inf"):
            with pytest.raises(ConfigError, match=f"{re.escape(path)} must be a finite number") as err:
                load_experiment(ROOT / "experiments" / "study_quickstart.yaml", [f"{path}={bad}"])
            assert "\n" not in str(err.value)
    inside = {
        "games=[{use: council, params: {weights: [2, .inf, 1]}}]": "games.0.params.weights.1",
        "estimators=[{use: sharp, params: {w_team: .nan}}]": "estimators.0.params.w_team",
        "team.skills=[0.9, .nan, 0.9]": "team.skills.1",
    }
    for override, path in inside.items():
        with pytest.raises(ConfigError, match=f"{re.escape(path)} must be a finite number"):
            load_experiment(ROOT / "experiments" / "study_quickstart.yaml", [override])
    batch_fields = float_fields(BatchConfig)
    assert "executor.gpus_per_run" in batch_fields
    for path in batch_fields:
        with pytest.raises(ConfigError, match=f"{re.escape(path)} must be a finite number"):
            load_batch(ROOT / "experiments" / "batch_quickstart.yaml", [f"{path}=.nan"])


def test_a_seed_listed_twice_is_one_line():
    with pytest.raises(ConfigError, match=r"seeds \[0\] appear more than once") as err:
        load_experiment(ROOT / "experiments" / "study_quickstart.yaml", ["seeds=[0,0,1]"])
    assert "\n" not in str(err.value)
