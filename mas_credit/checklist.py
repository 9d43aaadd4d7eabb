"""The reporting checklist of the survey behind this project (its Appendix C, Table 11),
filled in for every study and training run from the run's own files, so nothing in it
is typed by hand: `checklist.json` and a "Reporting checklist" section of `summary.md`.

Items (Required / Recommended in the survey):
  model          base model name, size and version
  tasks          the games, where their tasks come from, how many episodes, the splits
  method         credit granularity and methodology family of each estimator (the survey's taxonomy)
  baseline       whether the episode-level baseline (grpo) ran with the same model
  metric         the evaluation metric, defined exactly
  compute        wall time, GPU-hours, the device
  overhead       credit-assignment cost: coalition evaluations, LLM calls, tokens, and its share of the run's time
  trajectories   turns and response tokens per episode: mean, min, median, max
  variance       seeds, and whether mean +- 95% CI across them is reported

Inputs: `config.yaml`, `run.json` (written by the run: kind, wall time, device, team
description), and `costs.json` + `episodes.jsonl` (a study) or `metrics.jsonl` (training).
This module must not run games, estimators or models.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import numpy as np
import torch
import yaml

from mas_credit.estimators import get_estimator
from mas_credit.games import make_game
from mas_credit.outputs import read_costs, read_metrics, write_json

STUDY_METRIC = (
    "per-episode scores of each estimator's credit [B, N] against the exact Shapley value of the replayed "
    "coalition values: RMSE, Kendall tau-b, top agent, null-player absolute credit, efficiency gap (summary.md, "
    "Columns)"
)
TRAIN_METRIC = (
    "team success = share of held-out evaluation tasks whose team reward is >= 1 (the goal reached), greedy "
    "decoding; team reward = the game's reward R in [0, 1]; per-agent correctness = the game's `correct` component"
)


def device_info(devices) -> dict:
    """The hardware a run used: `devices` are the torch device types it ran on (e.g. {"cpu", "cuda"})."""

    info = {
        "types": sorted(set(devices)),
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "gpus": 0,
        "gpu": "",
    }
    if "cuda" in info["types"] and torch.cuda.is_available():
        info["gpus"], info["gpu"] = 1, torch.cuda.get_device_name(0)
    return info


def write_run_record(run_dir: Path, kind: str, wall_s: float, team: dict, devices) -> None:
    """`run.json`: what the checklist needs that the other files do not hold."""
    write_json(
        Path(run_dir) / "run.json",
        {"kind": kind, "wall_s": float(wall_s), "team": team, "device": device_info(devices)},
    )


def _spread(values) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "mean": float(np.mean(values)),
        "min": float(np.min(values)),
        "median": float(np.median(values)),
        "max": float(np.max(values)),
        "episodes": len(values),
    }


def _tasks(cfg: dict, kind: str) -> dict:
    games = []
    for g in cfg["games"]:
        game = make_game(
            g["name"], n_agents=g["n_agents"], difficulty=g["difficulty"], lazy_agents=g["lazy_agents"], **g["params"]
        )
        games.append(
            {
                "game": game.name,
                "label": g.get("label") or g["name"],
                "credit_structure": game.credit_structure,
                "n_agents": game.n_agents,
                "difficulty": game.difficulty,
                "lazy_agents": list(game.lazy_agents),
                "params": g["params"],
            }
        )
    source = (
        "generated procedurally by each game (mas_credit.games, documented in its module card) from task seeds; "
        "the same task seed always gives the same task"
    )
    if kind == "study":
        split = (
            f"seeds {cfg['seeds']}: each draws {cfg['n_tasks']} task seeds and plays each task {cfg['group_size']} "
            f"times ({cfg['n_tasks'] * cfg['group_size']} episodes per game and seed); no training, so no held-out "
            "split"
        )
    else:
        t = cfg["train"]
        split = (
            f"training: {t['iterations']} iterations x {cfg['n_tasks']} fresh task seeds x {cfg['group_size']} "
            "episodes, "
            f"task seeds drawn from seed {cfg['seeds'][0]} and the iteration; evaluation: {t['eval_tasks']} held-out "
            "task "
            f"seeds (a separate seed stream), greedy, every {t['eval_every']} iterations"
        )
    return {"games": games, "source": source, "split": split}


def _methods(cfg: dict) -> list[dict]:
    out = []
    for e in cfg["estimators"]:
        est = get_estimator(e["name"])
        out.append(
            {
                "estimator": e.get("label") or e["name"],
                "name": e["name"],
                "granularity": est.granularity,
                "family": est.family,
            }
        )
    return out


def _study_parts(run_dir: Path, cfg: dict, wall_s: float) -> tuple[dict, dict]:
    costs = read_costs(run_dir)["records"]
    overhead = {}
    for record in costs:
        if record["estimator"] == "ground truth":
            continue
        o = overhead.setdefault(
            record["estimator"],
            {
                "coalition_evals": 0.0,
                "llm_calls": 0.0,
                "tokens": 0.0,
                "critic_calls": 0.0,
                "seconds": 0.0,
                "episodes": 0,
            },
        )
        for key in ("coalition_evals", "llm_calls", "tokens", "critic_calls"):
            o[key] += record[key]
        o["seconds"] += record["wall_s"]
        o["episodes"] += record["episodes"]
    for o in overhead.values():
        o["share_of_run_time"] = o["seconds"] / wall_s if wall_s > 0 else math.nan
    turns, tokens = [], []
    with open(run_dir / "episodes.jsonl") as fh:
        for line in fh:
            ep = json.loads(line)
            turns.append(len(ep["turns"]))
            ids = [len(t["response_ids"]) for t in ep["turns"] if t.get("response_ids")]
            tokens.append(sum(ids) if ids else None)
    return overhead, {"turns": _spread(turns), "response_tokens": _spread(tokens)}


def _train_parts(run_dir: Path, cfg: dict, wall_s: float) -> tuple[dict, dict]:
    train, _ = read_metrics(run_dir)
    label = cfg["estimators"][0].get("label") or cfg["estimators"][0]["name"]
    o = {
        "coalition_evals": sum(r.get("cf/evals", 0.0) for r in train),
        "llm_calls": sum(r.get("cf/llm_calls", 0.0) for r in train),
        "tokens": sum(r.get("cf/tokens", 0.0) for r in train),
        "critic_calls": sum(r.get("critic/calls", 0.0) for r in train),
        "seconds": sum(r.get("time/credit_s", 0.0) for r in train),
        "episodes": sum(len(r.get("episode_turns", [])) for r in train),
    }
    o["share_of_run_time"] = o["seconds"] / wall_s if wall_s > 0 else math.nan
    turns = [n for r in train for n in r.get("episode_turns", [])]
    tokens = [n for r in train for n in r.get("episode_tokens", [])]
    return {label: o}, {"turns": _spread(turns), "response_tokens": _spread(tokens)}


def build_checklist(run_dir: str | Path) -> dict:
    """The checklist of a finished run, from its files."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file():
        raise FileNotFoundError(
            f"{run_dir} has no run.json; the checklist needs a run made by mas-credit study or train"
        )
    run = json.loads((run_dir / "run.json").read_text())
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    kind, wall_s = run["kind"], float(run["wall_s"])
    overhead, trajectories = (_study_parts if kind == "study" else _train_parts)(run_dir, cfg, wall_s)
    methods = _methods(cfg)
    team = run["team"]
    seeds = list(cfg["seeds"]) if kind == "study" else list(cfg["seeds"][:1])
    gpus = run["device"]["gpus"]
    return {
        "kind": kind,
        "model": team,
        "tasks": _tasks(cfg, kind),
        "method": methods,
        "baseline": {
            "episode_level_grpo_same_model": any(m["name"] == "grpo" for m in methods),
            "note": "grpo ran in this run with the same team"
            if any(m["name"] == "grpo" for m in methods)
            else "grpo did not run in this run; a batch that adds estimators=[grpo] with the same team gives the "
            "baseline",
        },
        "metric": STUDY_METRIC if kind == "study" else TRAIN_METRIC,
        "compute": {"wall_s": wall_s, "gpu_hours": wall_s / 3600.0 * gpus, "device": run["device"]},
        "overhead": overhead,
        "trajectories": trajectories,
        "variance": {
            "seeds": seeds,
            "reported": len(seeds) >= 2,
            "note": (
                f"mean +- 95% CI (Student t) across {len(seeds)} seeds in summary.md"
                if len(seeds) >= 2
                else "one seed: no variance estimate here; a batch over seeds (mas-credit batch) reports mean +- 95% CI"
            ),
        },
    }


def _num(value, digits=1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def checklist_markdown(items: dict) -> str:
    """The "Reporting checklist" section of summary.md."""
    team = items["model"]
    size = (
        f"{team['parameters']:,} parameters"
        if team.get("parameters")
        else "no model"
        if team["kind"] == "scripted"
        else "size unknown"
    )
    if team.get("adapter_parameters"):
        size += f" + {team['adapter_parameters']:,} LoRA parameters ({team.get('sharing')})"
    tasks = items["tasks"]
    games = "; ".join(
        f"{g['game']} ({g['credit_structure']}, {g['n_agents']} agents, difficulty {g['difficulty']}"
        + (f", lazy {g['lazy_agents']}" if g["lazy_agents"] else "")
        + ")"
        for g in tasks["games"]
    )
    methods = "; ".join(f"`{m['estimator']}`: {m['granularity']}, {m['family']}" for m in items["method"])
    compute = items["compute"]
    dev = compute["device"]
    hardware = (
        f"{dev['gpus']} GPU ({dev['gpu']})" if dev["gpus"] else f"CPU only ({dev['cpu']}, {dev['cpu_cores']} cores)"
    )
    overhead = "; ".join(
        f"`{name}`: {_num(o['coalition_evals'], 0)} coalition evaluations, {_num(o['llm_calls'], 0)} LLM calls, "
        f"{_num(o['tokens'], 0)} tokens, {_num(o['critic_calls'], 0)} critic calls, {_num(o['seconds'], 2)} s "
        f"({_num(100 * o['share_of_run_time'], 1)}% of the run)"
        for name, o in items["overhead"].items()
    )

    def spread(s):
        return (
            "–"
            if s is None
            else f"mean {s['mean']:.1f}, min {s['min']:.0f}, median {s['median']:.1f}, max {s['max']:.0f}"
        )

    traj = items["trajectories"]
    tokens = spread(traj["response_tokens"]) if traj["response_tokens"] else "– (scripted agents emit no tokens)"
    lines = [
        "## Reporting checklist",
        "",
        "The items of the survey's reporting checklist (Appendix C), filled in from this run's files (also in "
        "checklist.json).",
        "",
        "| item | this run |",
        "|---|---|",
        f"| base model | {team['name']}" + (f", {team['version']}" if team.get("version") else "") + f"; {size} |",
        f"| tasks and source | {games}; {tasks['source']} |",
        f"| splits | {tasks['split']} |",
        f"| credit granularity, methodology family | {methods} |",
        "| episode-level baseline (grpo), same model | "
        f"{'yes' if items['baseline']['episode_level_grpo_same_model'] else 'no'}: "
        f"{items['baseline']['note']} |",
        f"| evaluation metric | {items['metric']} |",
        f"| compute | wall time {compute['wall_s']:.1f} s; GPU-hours {compute['gpu_hours']:.4f}; {hardware} |",
        f"| credit-assignment overhead | {overhead} |",
        f"| trajectory length (turns per episode) | {spread(traj['turns'])} |",
        f"| trajectory length (response tokens per episode) | {tokens} |",
        f"| variance across seeds | {items['variance']['note']} |",
        "",
    ]
    return "\n".join(lines)


def write_checklist(run_dir: str | Path) -> str:
    """Write `checklist.json`; returns the markdown section for summary.md."""
    items = build_checklist(run_dir)
    write_json(Path(run_dir) / "checklist.json", items)
    return checklist_markdown(items)
