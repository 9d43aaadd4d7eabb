"""The `mas-credit` command line: study, train, batch, report, play, config show, games, estimators.

User mistakes print one line `mas-credit: error: ...` and exit with code 2; Ctrl-C prints
one line and exits 130; a closed pipe (`| head`) stops quietly with 141. Nothing here
catches programming errors, which keep their traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a tool killed by a closed pipe reports


class UsageError(ValueError):
    """A mistake in what the user asked for (exit code 2)."""


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--skills must be comma-separated probabilities like 0.9,0.8,0, got '{text}'") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--lazy must be comma-separated agent indices like 2 or 0,3, got '{text}'") from None


def cmd_play(args) -> int:
    import yaml

    from mas_credit.agents import ScriptedTeam, game_kwargs, load_critic, load_team
    from mas_credit.config import MAX_SEED, CriticConfig, GameConfig, load_team_config
    from mas_credit.counterfactual import fill_needs
    from mas_credit.estimators import get_estimator
    from mas_credit.games import make_game
    from mas_credit.rollout import collect
    from mas_credit.studies import ground_truth
    from mas_credit.types import CreditBatch

    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed must be an integer in [0, {MAX_SEED}], got {args.seed}")
    params = {}
    for item in args.param or []:
        if "=" not in item:
            raise UsageError(f"--param must look like key=value (e.g. --param weights=[2,2,1]), got '{item}'")
        key, value = item.split("=", 1)
        flag = {"n_agents": "--n-agents", "difficulty": "--difficulty", "lazy_agents": "--lazy"}.get(key)
        if flag:
            raise UsageError(f"--param {key}=...: give {key} with {flag} instead")
        try:
            params[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or "not valid YAML"
            raise UsageError(
                f"--param {key}={value}: the value is {problem} (write it as YAML, e.g. --param weights=[2,2,1])"
            ) from None
        from mas_credit.config import ConfigError, check_expanded_size

        try:
            check_expanded_size(params[key], f"--param {key}")
        except ConfigError as err:
            raise UsageError(str(err)) from None
    from mas_credit.games import GameParamError, resolve_game_name

    option = {}
    try:
        resolve_game_name(args.game)
    except GameParamError as unknown:  # not a game: a game option such as vault_lazy, if there is one
        from mas_credit.config import ConfigError, find_config_root, load_option

        try:
            option = load_option(find_config_root(), "games", args.game, "play")
        except ConfigError:
            raise GameParamError(f"{unknown} (or a game option from games/, e.g. vault_lazy)") from None
        params = {**option.get("params", {}), **params}
    n_agents = args.n_agents if args.n_agents is not None else option.get("n_agents", GameConfig.n_agents)
    difficulty = args.difficulty if args.difficulty is not None else option.get("difficulty", GameConfig.difficulty)
    lazy = _ints(args.lazy) if args.lazy else list(option.get("lazy_agents", []))
    game = make_game(
        option.get("name", args.game), n_agents=n_agents, difficulty=difficulty, lazy_agents=lazy, **params
    )
    args.game, args.n_agents = option.get("name", args.game), n_agents
    skills = _floats(args.skills) if args.skills else [0.9] * args.n_agents
    if len(skills) != args.n_agents:
        raise UsageError(
            f"--skills has {len(skills)} values but --n-agents is {args.n_agents}; give one skill per agent"
        )
    try:
        if args.team:
            if args.skills or args.lazy_team or args.malformed:
                raise UsageError(
                    "--skills, --lazy-team and --malformed describe the default scripted team; drop them when you "
                    "give --team"
                )
            team_cfg = load_team_config(args.team)
            if team_cfg.kind == "scripted":
                skills = list(team_cfg.skills)
            kwargs = game_kwargs(
                GameConfig(
                    name=args.game,
                    n_agents=game.n_agents,
                    difficulty=game.difficulty,
                    lazy_agents=list(game.lazy_agents),
                    params=params,
                ),
                team_cfg,
            )
            game = make_game(args.game, **kwargs)  # an LLM team's topology may set the turn order
            team = load_team(team_cfg, n_agents=game.n_agents, sequential=game.sequential)
        else:
            team = ScriptedTeam(
                skills,
                lazy=_ints(args.lazy_team) if args.lazy_team else [],
                malformed_rate=args.malformed,
                seed=args.seed,
            )
        names = dict.fromkeys(
            name.strip() for name in args.estimators.split(",") if name.strip()
        )  # in order, once each
        estimators = [
            get_estimator(name) for name in names if name != "shapley"
        ]  # exact Shapley is always the first column
    except ValueError as err:
        raise UsageError(str(err)) from None
    if team.n_agents != game.n_agents:
        raise UsageError(f"the team has {team.n_agents} agents but --n-agents is {game.n_agents}; make them match")
    episode = collect(game, team, n_tasks=1, group_size=1, seed=args.seed)[0]
    critic = load_critic(CriticConfig(seed=args.seed))  # the scripted critic studies use, with its defaults
    columns = {}
    try:
        for est in estimators:
            fill_needs(game, [episode], est.needs(None, game.n_agents), team=team, critic=critic)
            columns[est.name] = est(CreditBatch.from_episodes([episode]), {"device": "cpu"}).credit[0]
    except ValueError as err:  # e.g. a budget below the estimator's minimum for this team size
        raise UsageError(str(err)) from None
    phi, _, v_empty = ground_truth(game, [episode])  # enumerated, or the crew games' closed form
    phi, v_empty = phi[0], float(v_empty[0])

    print(
        f"== {game.name}  ({game.credit_structure}; {game.n_agents} agents; difficulty {game.difficulty}; "
        f"lazy agents {game.lazy_agents or 'none'}; task seed {episode.task_seed})"
    )
    for turn in episode.turns:
        name = episode.agents[turn.agent]
        print(f"\n[{turn.step}] {name} sees:\n    {turn.prompt}")
        action = repr(turn.action) if turn.valid else "INVALID -> null action"
        print(f"    {name} says: {turn.text!r}\n    parsed: {action}")
    print(f"\nTeam reward R = {episode.reward:.3f}   (v(empty) = {v_empty:.3f})")
    widths = {name: max(10, len(name) + 2) for name in columns}
    print(
        f"{'agent':<10}{'skill':>7}{'shapley':>10}" + "".join(f"{n:>{w}}" for n, w in widths.items()) + "  components"
    )
    for i, name in enumerate(episode.agents):
        comps = ", ".join(f"{k}={v[i]:.2f}" for k, v in episode.components.items())
        member = (
            team.members[i]
            if team.kind == "mixed"
            else {"kind": team.kind, "skill": skills[i] if team.kind == "scripted" else None}
        )
        skill = f"{member.get('skill', 0.9):>7.2f}" if member["kind"] == "scripted" else f"{member['kind']:>7}"
        print(
            f"{name:<10}{skill}{float(phi[i]):>10.3f}"
            + "".join(f"{float(c[i]):>{widths[n]}.3f}" for n, c in columns.items())
            + f"  {comps}"
        )
    print(
        f"sum of Shapley = {float(phi.sum()):.3f} = R - v(empty)   (shapley is the exact ground truth; "
        f"the other columns are estimators; llm_mca's critic is the scripted one with the study defaults)"
    )
    if episode.messages:
        _print_messages(game, episode)
    return 0


def _print_messages(game, episode) -> None:
    """`play` on a game with messages: each message (edge) with its exact edge Shapley credit."""
    from mas_credit.edges import fill_edge_values
    from mas_credit.estimators.edges import get_edge_estimator
    from mas_credit.types import EdgeBatch

    fill_edge_values(game, [episode], "all")
    credit = get_edge_estimator("edge_shapley")(EdgeBatch.from_episodes([episode]), {"device": "cpu"}).credit[0]
    names = episode.agents
    print(
        f"\nMessages (edges; v(all) = {episode.edge_values[(1 << len(episode.messages)) - 1]:.3f}, "
        f"v(none) = {episode.edge_values[0]:.3f}):"
    )
    for m, msg in enumerate(episode.messages):
        print(
            f"m{m}  {names[msg.sender]} -> {names[msg.receiver]} (turn {msg.turn}): {msg.text!r:<36}"
            f"edge Shapley {float(credit[m]):.3f}"
        )


def cmd_estimators(args) -> int:
    from mas_credit.estimators import get_estimator, list_estimators
    from mas_credit.estimators.edges import get_edge_estimator, list_edge_estimators

    names = list_estimators() + list_edge_estimators()
    width = max(len(n) for n in names) + 2
    for name in names:
        edge = name in list_edge_estimators()
        est = get_edge_estimator(name) if edge else get_estimator(name)
        needs = est.needs(None, 3)
        wants = [
            f"{'edge sets' if edge else 'coalitions'}:{needs.kind}" if needs.kind else "",
            f"alternatives:{needs.alternatives}" if needs.alternatives else "",
            "critic" if needs.critic else "",
            f"tree:{list(needs.tree_fanout)}" if needs.tree_fanout else "",
        ]
        summary = est.doc.strip().splitlines()[0].removeprefix(f"`{name}`: ")
        players = " (per message: games with messages, listed under edges.estimators)" if edge else ""
        print(f"{name:<{width}}{summary}{players}")
        print(f"{'':<{width}}needs: {', '.join(w for w in wants if w) or 'nothing beyond the episodes'}")
    return 0


def cmd_config_show(args) -> int:
    from mas_credit.config import ConfigError, find_config_root, load_experiment, to_yaml, validate_train

    sources: dict = {}
    cfg = load_experiment(args.experiment, args.overrides, sources=sources)
    print(
        "# option folders searched, in order: "
        f"{', '.join(str(r) for r in find_config_root(Path(args.experiment).parent).roots)}"
    )
    for where, source in sources.items():
        print(f"# {where.split(': ', 1)[-1]} <- {source}")
    if cfg.team.kind in ("llm", "vllm", "mixed"):  # a team that may learn: say what `train` alone would refuse
        try:
            validate_train(cfg, args.experiment)
        except ConfigError as err:
            print(f"# mas-credit train would refuse this config (study would run it): {err}")
    print(to_yaml(cfg, only_used=True), end="")
    return 0


def cmd_study(args) -> int:
    import time

    from mas_credit.config import load_experiment
    from mas_credit.studies import run_study

    cfg = load_experiment(args.experiment, args.overrides)
    start = time.perf_counter()
    run_dir = run_study(cfg, out_dir=args.out, progress=not args.no_progress, overwrite=args.overwrite)
    print((run_dir / "summary.md").read_text())
    print(
        f"study {cfg.name}: {len(cfg.games)} games x {len(cfg.seeds)} seeds x {len(cfg.estimators)} estimators "
        f"in {time.perf_counter() - start:.1f} s; results in {run_dir}/ (summary.md, credit.parquet, episodes.jsonl, "
        "PNG plots)"
    )
    return 0


def cmd_train(args) -> int:
    import time

    from mas_credit.config import load_experiment, validate_train
    from mas_credit.train.trainer import resume, train

    start = time.perf_counter()
    try:
        if args.resume:
            if args.experiment or args.overrides:
                raise UsageError(
                    "--resume continues a run with its saved config; give no experiment or overrides with it"
                )
            run_dir = resume(args.resume, progress=not args.no_progress)
        else:
            if not args.experiment:
                raise UsageError("give an experiment YAML (e.g. experiments/quickstart.yaml) or --resume RUN_DIR")
            cfg = load_experiment(args.experiment, args.overrides)
            validate_train(cfg, args.experiment)
            run_dir = train(cfg, out_dir=args.out, progress=not args.no_progress, overwrite=args.overwrite)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    print((run_dir / "summary.md").read_text())
    print(f"trained in {time.perf_counter() - start:.1f} s; metrics, checkpoint and plots in {run_dir}/")
    return 0


def cmd_batch(args) -> int:
    import json

    import pandas as pd

    from mas_credit.batch import run_batch
    from mas_credit.config import load_batch

    cfg = load_batch(args.batch, args.overrides)
    batch_dir = run_batch(cfg, out_dir=args.out, progress=not args.no_progress, overwrite=args.overwrite)
    print((batch_dir / "batch.md").read_text())
    frame, meta = pd.read_parquet(batch_dir / "batch.parquet"), json.loads((batch_dir / "batch.json").read_text())
    failed = frame.loc[frame["status"] != "ok", "run"].nunique()
    print(
        f"batch {cfg.name}: {len(meta['runs'])} runs ({len(meta['executed'])} executed, {len(meta['skipped'])} "
        "already finished) "
        f"in {meta['wall_s']:.1f} s; {failed} failed; results in {batch_dir}/ (batch.md, batch.parquet, plots/, runs/)"
    )
    return 1 if failed else 0


def cmd_report(args) -> int:
    from mas_credit.batch import render_batch
    from mas_credit.report import render
    from mas_credit.train.summary import render_training

    written = "summary.md"
    try:
        if (Path(args.run_dir) / "batch.json").is_file():
            print(render_batch(args.run_dir))
            written = "batch.md"
        elif (Path(args.run_dir) / "metrics.jsonl").is_file() and not (Path(args.run_dir) / "credit.parquet").is_file():
            print(render_training(args.run_dir))
        else:
            print(render(args.run_dir))
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    print(f"rewrote {args.run_dir}/{written} and its plots")
    return 0


def cmd_games(args) -> int:
    from mas_credit.games import game_params, list_games, make_game

    games = {name: make_game(name) for name in list_games()}
    width = max(len(name) for name in games) + 2  # long (outside) names keep their columns apart
    structure = max(len(game.credit_structure) for game in games.values()) + 2
    for name, game in games.items():
        kind = "AEC (turn-based)" if game.sequential else "parallel (one move)"
        print(f"{name:<{width}}{game.credit_structure:<{structure}}{kind:<22}params: {', '.join(game_params(name))}")
    return 0


TEAM_KIND_HELP = {
    "scripted": "simulated agents with set skills (team.skills, lazy, saboteurs)",
    "llm": "language models, transformers backend, a LoRA adapter per agent",
    "vllm": "the llm team served by vLLM in this process (GPU)",
    "mixed": "one member of its own kind per agent (team.members: scripted, tabular, llm or a plug-in kind)",
    "openai": "a model behind an OpenAI-compatible server (team.params or a member's keys: base_url, model, ...); "
    "never learns",
}


def cmd_teams(args) -> int:
    from mas_credit.agents import team_kinds
    from mas_credit.agents.kinds import plugged_kind

    kinds = team_kinds()
    width = max(len(k) for k in kinds) + 2
    for kind in kinds:
        plugged = TEAM_KIND_HELP.get(kind) is None
        described = TEAM_KIND_HELP.get(kind) or "plug-in: " + (plugged_kind(kind).description or "no description")
        print(f"{kind:<{width}}{described}" + ("; options in team.params, or a member's own keys" if plugged else ""))
    return 0


def cmd_serve_check(args) -> int:
    from mas_credit.agents.served import ServedClient, served_settings

    try:
        settings = served_settings({"base_url": args.url, "model": "-", "api_key_env": args.api_key_env}, "serve-check")
    except ValueError as err:
        raise UsageError(str(err)) from None
    models = ServedClient(settings).models()
    print(f"{args.url} serves {len(models)} model(s):")
    for model in models:
        print(f"  {model}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mas-credit", description="Multi-agent credit assignment simulator and trainer."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    play = sub.add_parser("play", help="play one episode of a game with a scripted team and show its exact credit")
    play.add_argument(
        "game",
        help="game name, e.g. vault or vault_v0 (see `mas-credit games`), or a game option from games/, "
        "e.g. vault_lazy (the flags below override its fields)",
    )
    play.add_argument("--n-agents", type=int, help="team size (2..8; default 3, or the game option's)")
    play.add_argument("--difficulty", type=int, help="1..3 (default 1, or the game option's)")
    play.add_argument("--skills", help="comma-separated probability of the right action per agent (default 0.9 each)")
    play.add_argument("--lazy", help="game's lazy agents (null players), comma-separated indices")
    play.add_argument("--lazy-team", help="scripted agents that always answer with nothing, comma-separated indices")
    play.add_argument("--malformed", type=float, default=0.0, help="rate of unparseable output")
    play.add_argument("--seed", type=int, default=0)
    play.add_argument("--param", action="append", help="game-specific key=value (YAML value), repeatable")
    play.add_argument(
        "--team",
        help="a team option from agents/ or a team YAML file, e.g. smollm_trio "
        "(default: scripted agents with --skills)",
    )
    play.add_argument(
        "--estimators",
        default="loo,grpo",
        help="comma-separated estimators to show beside exact Shapley (see `mas-credit estimators`)",
    )
    play.set_defaults(func=cmd_play)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config-dir",
        action="append",
        default=None,
        metavar="DIR",
        help="also search DIR for the option folders games/, agents/, estimators/ (first; repeatable; "
        "also $MAS_CREDIT_CONFIG_PATH)",
    )
    config = sub.add_parser("config", help="inspect configurations")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser(
        "show", help="print an experiment's resolved config and where each option came from", parents=[common]
    )
    show.add_argument("experiment", help="experiment YAML, e.g. experiments/demo.yaml")
    show.add_argument("overrides", nargs="*", help="key=value overrides, e.g. n_tasks=16 team.skills=[1,1,0]")
    show.set_defaults(func=cmd_config_show)

    study = sub.add_parser(
        "study", help="run estimators side by side on the same episodes, scored against exact Shapley", parents=[common]
    )
    study.add_argument("experiment", help="experiment YAML, e.g. experiments/study_quickstart.yaml")
    study.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seeds=[0] n_tasks=4")
    study.add_argument("--out", help="run folder (default: <output_dir>/<name>, or <name>-2, ... when that is taken)")
    study.add_argument(
        "--overwrite", action="store_true", help="replace the run that --out holds (its old outputs are removed)"
    )
    study.add_argument("--no-progress", action="store_true", help="no progress bar")
    study.set_defaults(func=cmd_study)

    train = sub.add_parser(
        "train", help="train the team's agents from an estimator's credit (per-agent policy updates)", parents=[common]
    )
    train.add_argument("experiment", nargs="?", help="experiment YAML, e.g. experiments/quickstart.yaml")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.iterations=4 estimators=[grpo]")
    train.add_argument("--out", help="run folder (default: <output_dir>/<name>, or <name>-2, ... when that is taken)")
    train.add_argument(
        "--overwrite", action="store_true", help="replace the run that --out holds (its old outputs are removed)"
    )
    train.add_argument("--resume", help="continue the run in this folder from its last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    batch = sub.add_parser(
        "batch",
        help="run a grid of studies or training runs (local processes or Ray) and aggregate them; "
        "finished runs are skipped on re-run; exit code 1 if any run failed",
        parents=[common],
    )
    batch.add_argument("batch", help="batch YAML, e.g. experiments/batch_quickstart.yaml")
    batch.add_argument(
        "overrides", nargs="*", help="key=value overrides of the batch, e.g. executor.workers=1 executor.kind=ray"
    )
    batch.add_argument(
        "--out", help="batch folder (default: <output_dir>/<name>); a batch folder is continued (resumed)"
    )
    batch.add_argument("--overwrite", action="store_true", help="replace the study or training run that --out holds")
    batch.add_argument("--no-progress", action="store_true", help="no line per finished run")
    batch.set_defaults(func=cmd_batch)

    report = sub.add_parser(
        "report", help="render the summary and plots of a finished study, training run or batch again"
    )
    report.add_argument("run_dir", help="a run or batch folder, e.g. runs/study_quickstart or runs/batch_quickstart")
    report.set_defaults(func=cmd_report)

    games = sub.add_parser("games", help="list the registered games")
    games.set_defaults(func=cmd_games)

    estimators = sub.add_parser("estimators", help="list the registered credit estimators and what each needs")
    estimators.set_defaults(func=cmd_estimators)

    teams = sub.add_parser("teams", help="list the team kinds (built in and from plug-ins)")
    teams.set_defaults(func=cmd_teams)

    serve = sub.add_parser("serve-check", help="check that an OpenAI-compatible server answers, and list its models")
    serve.add_argument("url", help="the server's root, e.g. http://127.0.0.1:8000/v1")
    serve.add_argument(
        "--api-key-env", default="", help="the environment variable that holds its API key (default: none)"
    )
    serve.set_defaults(func=cmd_serve_check)
    return parser


def _search_config_dirs(config_dirs: list[str]) -> None:
    """Put the --config-dir folders first on the option search path, through the environment, so
    batch workers and Ray tasks search the same folders."""
    from mas_credit.config import CONFIG_PATH_ENV

    missing = [d for d in config_dirs if not Path(d).is_dir()]
    if missing:
        raise UsageError(
            f"--config-dir {missing[0]} is not a folder; give a folder that holds games/, agents/ or estimators/"
        )
    dirs = [str(Path(d).resolve()) for d in config_dirs]
    os.environ[CONFIG_PATH_ENV] = os.pathsep.join(
        dirs + [p for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]
    )


def main(argv: list[str] | None = None) -> int:
    from mas_credit.agents.served import ServedError
    from mas_credit.config import ConfigError
    from mas_credit.games import GameParamError
    from mas_credit.outputs import BatchInterrupted, RunDirError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "config_dir", None):
            _search_config_dirs(args.config_dir)
        code = args.func(args)
        sys.stdout.flush()  # inside the try: a reader that went away shows up here
        return code
    except (UsageError, ConfigError, GameParamError, RunDirError, ServedError) as err:
        print(f"mas-credit: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BatchInterrupted as err:
        print(f"\nmas-credit: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\nmas-credit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`mas-credit games | head -3`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not fail again
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
