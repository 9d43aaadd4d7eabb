"""Credit decomposition studies: the estimators side by side on the same episodes,
scored against exact Shapley.

For each game and seed of an experiment: collect the episodes once (tree fan-out
rollouts if a listed estimator needs them — every estimator then sees those same
episodes), compute the ground truth (exact Shapley of the replayed coalition values),
then for each estimator fill only what it declares it needs, on its own copy of the
episodes (so its cost is what it would pay alone and resampled values never mix with
the ground truth's), and run it. The team may be scripted or an LLM team: the study only
calls `collect`/`collect_tree` and the counterfactual helpers.

Outputs go to `<output_dir>/<name>/` and are written only once everything is computed,
each file atomically: `config.yaml`, `episodes.jsonl`, `credit.parquet`, `costs.json`,
then `summary.md` and the plots (`mas_credit.report`). This module must not format tables.
"""

from __future__ import annotations

import math
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from mas_credit.agents import describe_team, game_kwargs, load_critic, load_team, served_counts
from mas_credit.checklist import write_run_record
from mas_credit.coalitions import DENSE_MAX_AGENTS, check_enumerable, mask_array
from mas_credit.config import ExperimentConfig, check_memory, to_yaml
from mas_credit.counterfactual import fill_coalitions, fill_needs
from mas_credit.edges import fill_edge_needs
from mas_credit.estimators import get_estimator
from mas_credit.estimators.edges import get_edge_estimator
from mas_credit.estimators.shapley import coalition_halves, exact_shapley
from mas_credit.games import make_game
from mas_credit.outputs import (
    RunDirError,
    check_run_dir,
    run_lock,
    staged_run_dir,
    write_json,
    write_jsonl,
    write_manifest,
    write_parquet,
    write_text,
)
from mas_credit.report import TRUTH, render
from mas_credit.rollout import collect, collect_tree
from mas_credit.types import CreditBatch, EdgeBatch, Episode, resolve_device


def _copies(episodes: list[Episode]) -> list[Episode]:
    """Independent copies with no counterfactual values (each estimator pays its own way)."""
    out = []
    for ep in episodes:
        copy = Episode.from_dict(ep.to_dict())
        copy.coalition_values, copy.alternative_values, copy.critic = {}, {}, None
        copy.edge_values, copy.edge_critic = {}, None
        out.append(copy)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(eps, fill, batch_type, est, ecfg):
    """Fill what `est` needs on `eps`, batch them and run it on its device; returns the batch,
    its output, the cost counters and the seconds of each part (the device synchronised)."""
    start = time.perf_counter()
    counts = fill(eps)
    fill_s = time.perf_counter() - start
    batch = batch_type.from_episodes(eps)
    device = resolve_device(ecfg.device)
    _sync(device)
    start = time.perf_counter()
    out = est(batch, ecfg)
    _sync(device)
    return batch, out, counts, fill_s, time.perf_counter() - start, device


def null_players(values: torch.Tensor) -> torch.Tensor:
    """[B, 2**N] -> [B, N] True where every marginal contribution of the agent is exactly 0."""
    values = values.contiguous()
    out = []
    for i in range(values.shape[1].bit_length() - 1):
        without, with_ = coalition_halves(values, i)
        out.append((with_ == without).flatten(1).all(dim=1))
    return torch.stack(out, dim=1)


def ground_truth(game, episodes: list[Episode]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(exact Shapley phi [B, N], null players [B, N] bool, v(empty) [B]) of replayed coalition values.

    A game that declares its credit in closed form (the crew games: `game.shapley`) gives it at any
    team size; any other game is enumerated over its 2**N coalitions (refused beyond
    ENUMERATE_MAX_AGENTS agents). Computed on copies, so no estimator reads the truth's values."""
    if getattr(game, "closed_form_credit", False):
        phi = torch.tensor(np.stack([game.shapley(ep) for ep in episodes]), dtype=torch.float64)
        nulls = torch.tensor(np.stack([game.null_players(ep) for ep in episodes]))
        v_empty = torch.tensor([float(game.team_values(ep, mask_array([0], ep.n_agents))[0]) for ep in episodes])
        return phi, nulls, v_empty.to(torch.float64)
    check_enumerable(game.n_agents, f"the ground truth of {game.name} (no closed-form credit)")
    truth_eps = _copies(episodes)
    fill_coalitions(game, truth_eps, "all")
    if game.n_agents <= DENSE_MAX_AGENTS:
        values = CreditBatch.from_episodes(truth_eps, coalitions="dense").coalition_values
    else:  # enumerable but past the batch's dense form (a plug-in game of 11..20 agents): the table, for the truth only
        values = torch.full((len(truth_eps), 1 << game.n_agents), float("nan"), dtype=torch.float64)
        for b, ep in enumerate(truth_eps):
            values[b, list(ep.coalition_values)] = torch.tensor(list(ep.coalition_values.values()), dtype=torch.float64)
    return exact_shapley(values), null_players(values), values[:, 0]


def per_agent_advantage(advantage: torch.Tensor, turn_agent: torch.Tensor, n_agents: int) -> torch.Tensor:
    """advantage [B, T], turn_agent [B, T] (-1 = padding) -> [B, N] float64 on the CPU: each agent's
    advantage, the mean over its turns of the episode; NaN where it took none."""
    mine = turn_agent.cpu()[..., None] == torch.arange(n_agents)  # [B, T, N]
    total = torch.where(mine, advantage.detach().to("cpu", torch.float64)[..., None], 0.0).sum(1)  # [B, N]
    turns = mine.sum(1)
    return torch.where(turns > 0, total / turns.clamp(min=1), torch.nan)


def run_study(
    cfg: ExperimentConfig, out_dir: str | Path | None = None, progress: bool = True, overwrite: bool = False
) -> Path:
    """Run the study of an experiment; returns the run folder (`check_run_dir`: a folder holding
    another run is refused unless `overwrite`; a taken default folder gets a suffix). The
    outputs are written to a staged folder that replaces the run folder when all is done, so
    a study stopped by Ctrl-C or an error leaves nothing, or the previous complete outputs."""
    check_memory(cfg, len(cfg.seeds), cfg.name)
    run_dir = check_run_dir(
        Path(out_dir) if out_dir is not None else Path(cfg.output_dir) / cfg.name,
        "study",
        overwrite=overwrite,
        default=out_dir is None,
    )
    with run_lock(run_dir):  # one process per folder; checked again once held (another may have just finished)
        check_run_dir(run_dir, "study", overwrite=overwrite)
        with staged_run_dir(run_dir, "study") as work:
            _run_study(cfg, work, progress, shown=run_dir)
            write_manifest(work)
        render(run_dir)  # summary.md and plots, from the files now in place
    return run_dir


def _run_study(cfg: ExperimentConfig, run_dir: Path, progress: bool, shown: Path | None = None) -> Path:
    run_start = time.perf_counter()
    estimators = []
    for e in cfg.estimators:
        est = get_estimator(e.name)
        estimators.append((e.label or e.name, est, est.make_config(e)))
    critic_cfg = next((ecfg for _, est, ecfg in estimators if est.name == "llm_mca"), None)
    if critic_cfg is not None and not any(est.name == "uniform" for _, est, _ in estimators):
        # a critic is always compared with what it falls back to: equal shares of the same quantity
        uniform = get_estimator("uniform")
        estimators.append(
            ("uniform", uniform, uniform.make_config({"baseline": critic_cfg.baseline, "device": critic_cfg.device}))
        )
    fanout = next(
        (n.tree_fanout for _, est, ecfg in estimators if (n := est.needs(ecfg, cfg.games[0].n_agents)).tree_fanout),
        None,
    )

    rows, costs, records = [], [], []
    devices = set()
    teams: dict = {}  # an LLM team is loaded once per team size, not once per game and seed
    edge_estimators = []
    for e in cfg.edges.estimators:
        est = get_edge_estimator(e.name)
        edge_estimators.append((e.label or e.name, est, est.make_config(e)))
    n_first = cfg.games[0].n_agents
    wants_critic = any(est.needs(ecfg, n_first).critic for _, est, ecfg in estimators) or any(
        est.needs(ecfg, 3).critic for _, est, ecfg in edge_estimators
    )
    critic = load_critic(cfg.critic) if wants_critic else None
    edge_rows, edge_costs = [], []
    game_seeds = [(g, seed) for g in cfg.games for seed in cfg.seeds]
    bar = tqdm(
        game_seeds, desc=f"study {cfg.name}", unit="game-seed", disable=not progress, leave=True
    )  # a finished bar ends its line
    for gcfg, seed in bar:
        game_label = gcfg.label or gcfg.name
        bar.set_postfix_str(f"{game_label} seed {seed}")
        game = make_game(gcfg.name, **game_kwargs(gcfg, cfg.team))
        key = (game.n_agents, game.sequential)
        if key not in teams:
            teams[key] = load_team(cfg.team, n_agents=game.n_agents, sequential=game.sequential)
        team = teams[key]
        start = time.perf_counter()
        if fanout:
            episodes = collect_tree(game, team, cfg.n_tasks, fanout, seed=seed)
        else:
            episodes = collect(game, team, cfg.n_tasks, cfg.group_size, seed=seed)
        rollout_s = time.perf_counter() - start

        truth, nulls, v_empty = ground_truth(game, episodes)  # [B, N], [B, N], [B]
        for b, ep in enumerate(episodes):
            records.append({"game": game_label, "seed": int(seed), "episode": b, **ep.to_dict()})
        base = {"game": game_label, "seed": int(seed)}
        turns = [t for ep in episodes for t in ep.turns]
        correct = [ep.components.get("correct", [math.nan] * game.n_agents) for ep in episodes]  # [B][N]
        costs.append(
            {
                **base,
                "estimator": TRUTH,
                "rollout_s": rollout_s,
                "episodes": len(episodes),
                "turns": len(turns),
                "invalid_turns": sum(not t.valid for t in turns),
                "team_reward": sum(ep.reward for ep in episodes) / len(episodes),
            }
        )

        for label, est, ecfg in estimators:
            eps = _copies(episodes)
            fill = partial(
                fill_needs,
                game,
                needs=est.needs(ecfg, game.n_agents),
                team=team,
                critic=critic,
                noise=cfg.coalition_noise,
            )
            batch, out, counts, fill_s, est_s, device = _timed(eps, fill, CreditBatch, est, ecfg)
            devices.add(device.type)
            credit = out.credit.detach().to("cpu", torch.float64)
            agent_advantage = per_agent_advantage(out.advantage, batch.turn_agent, game.n_agents)
            for b in range(len(eps)):
                for i in range(game.n_agents):
                    rows.append(
                        {
                            **base,
                            "episode": b,
                            "task": int(eps[b].group),
                            "agent": i,
                            "estimator": label,
                            "credit": float(credit[b, i]),
                            "truth": float(truth[b, i]),
                            "reward": float(eps[b].reward),
                            "v_empty": float(v_empty[b]),
                            "acted": bool(batch.acted[b, i]),
                            "null_player": bool(nulls[b, i]),
                            "correct": float(correct[b][i]),
                            "advantage": float(agent_advantage[b, i]),
                        }
                    )
            costs.append(
                {
                    **base,
                    "estimator": label,
                    "episodes": len(eps),
                    "fill_s": fill_s,
                    "estimator_s": est_s,
                    "wall_s": fill_s + est_s,
                    "device": device.type,
                    "coalition_evals": counts.get("cf/evals", 0.0),
                    "llm_calls": counts.get("cf/llm_calls", 0.0),
                    "tokens": counts.get("cf/tokens", 0.0),
                    "critic_calls": counts.get("critic/calls", 0.0),
                    "critic_fallback": counts.get("critic/fallback", 0.0),
                    **{f"metric/{k}": float(v) for k, v in out.metrics.items()},
                }
            )
        if edge_estimators:
            out_rows, out_costs = _edge_study(cfg, game, team, episodes, critic, edge_estimators, base)
            edge_rows += out_rows
            edge_costs += out_costs
    bar.close()

    frame = pd.DataFrame(rows)
    team = next(iter(teams.values()))
    description = describe_team(team)
    costs_json = {
        "team": cfg.team.kind,
        "critic": cfg.critic.kind,
        "n_tasks": cfg.n_tasks,
        "group_size": cfg.group_size,
        "fanout": list(fanout) if fanout else None,
        "seeds": list(cfg.seeds),
        "records": costs,
        "edge_records": edge_costs,
        "served": served_counts({"critic": critic, **{f"team of {n}": t for (n, _), t in teams.items()}}),
    }

    def write_outputs(folder: Path) -> None:
        if edge_rows:
            write_parquet(folder / "edges.parquet", pd.DataFrame(edge_rows))
        write_text(folder / "config.yaml", to_yaml(cfg))
        write_jsonl(folder / "episodes.jsonl", records)
        write_parquet(folder / "credit.parquet", frame)
        write_json(folder / "costs.json", costs_json)
        write_run_record(
            folder,
            "study",
            time.perf_counter() - run_start,
            description,
            devices | {description["device"].split(":")[0]},
        )

    try:
        write_outputs(run_dir)
    except OSError as err:  # a full disk or a mount gone busy after the compute: keep the results elsewhere
        kept = Path(tempfile.mkdtemp(prefix=f"mas-credit-{cfg.name}-"))
        try:
            write_json(kept / "kind.json", {"kind": "study"})
            write_outputs(kept)
            write_manifest(kept)
        except OSError as again:
            raise RunDirError(
                f"cannot write the study's outputs to {shown or run_dir} ({err.strerror or err}) nor to {kept} "
                f"({again.strerror or again}); free some space and run it again"
            ) from None
        raise RunDirError(
            f"cannot write the study's outputs to {shown or run_dir} ({err.strerror or err}); they are kept in "
            f"{kept}: move that folder where you want it (mas-credit report works on it)"
        ) from None
    return run_dir


def edge_truth(cfg: ExperimentConfig, game, team, episodes: list[Episode]):
    """Exact Shapley over each episode's messages (sampled within `edges.budget` beyond
    `edges.exact_up_to` messages), from edge values in `edges.mode`. Returns (phi [B, E], the
    batch it was computed from, null edges [B, E] bool (None when sampled), whether it is exact)."""
    n_edges = len(episodes[0].messages) if episodes else 0
    exact = n_edges <= cfg.edges.exact_up_to
    truth_cfg = {
        "method": "exact" if exact else "sampled",
        "budget": cfg.edges.budget,
        "counterfactual": cfg.edges.mode,
        "samples": cfg.edges.samples,
        "device": "cpu",
    }
    est = get_edge_estimator("edge_shapley")
    eps = _copies(episodes)
    fill_edge_needs(game, eps, est.needs(truth_cfg, n_edges), team=team)
    batch = EdgeBatch.from_episodes(eps)
    phi = est(batch, truth_cfg).credit
    return phi, batch, null_players(batch.edge_values) if exact else None, exact


def _edge_study(cfg, game, team, episodes, critic, edge_estimators, base) -> tuple[list[dict], list[dict]]:
    """The edge estimators of one (game, seed) against the edge ground truth: one row per episode,
    message and estimator, and one cost record per estimator."""
    truth, truth_batch, nulls, exact = edge_truth(cfg, game, team, episodes)
    distractors = set(getattr(game, "distractors", ()))
    rows, costs = [], []
    n_edges = truth_batch.n_edges
    for label, est, ecfg in edge_estimators:
        eps = _copies(episodes)
        fill = partial(fill_edge_needs, game, needs=est.needs(ecfg, n_edges), team=team, critic=critic)
        _, out, counts, fill_s, est_s, device = _timed(eps, fill, EdgeBatch, est, ecfg)
        credit = out.credit.detach().to("cpu", torch.float64)
        for b, ep in enumerate(eps):
            for m, msg in enumerate(ep.messages):
                rows.append(
                    {
                        **base,
                        "episode": b,
                        "edge": m,
                        "sender": msg.sender,
                        "receiver": msg.receiver,
                        "turn": msg.turn,
                        "estimator": label,
                        "credit": float(credit[b, m]),
                        "truth": float(truth[b, m]),
                        "truth_exact": exact,
                        "null_edge": bool(nulls[b, m]) if nulls is not None else False,
                        "distractor": msg.sender in distractors,
                        "reward": float(ep.reward),
                        "v_none": float(truth_batch.edge_values[b, 0]),  # every truth has the empty edge set
                    }
                )
        costs.append(
            {
                **base,
                "estimator": label,
                "episodes": len(eps),
                "fill_s": fill_s,
                "estimator_s": est_s,
                "wall_s": fill_s + est_s,
                "device": device.type,
                "edge_evals": counts.get("cf/edge_evals", 0.0),
                "llm_calls": counts.get("cf/llm_calls", 0.0),
                "critic_calls": counts.get("edge_critic/calls", 0.0),
                "critic_fallback": counts.get("edge_critic/fallback", 0.0),
            }
        )
    return rows, costs
