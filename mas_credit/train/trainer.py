"""`mas-credit train`: each agent learns from the credit the estimator gives it.

One iteration (docs/architecture.md, "Data flow"):
  collect n_tasks x group_size episodes with the team (tree fan-out if the estimator needs it)
  -> fill the counterfactuals the estimator needs -> CreditBatch -> estimator on its device
  -> each learner class's shared preparation (LLM adapters: one reference pass per model)
  -> for every learner: `update(its agents' turns and advantages)` (mas_credit.train.learners:
     an LLM adapter or a tabular policy; a clipped policy-gradient update with its own
     optimizer, gradient clipping, micro-batches). The loop never branches on the kind.
The importance ratio's old log-probs are the learner's own (the first epoch's forward, in
the training dtype, before any parameter moves), not the sampler's: the two differ by the
rollout's numerics (up to tenths of a nat in bfloat16 on a GPU), which would make the first
ratio differ from 1 and clip tokens the policy never moved. The gap is logged per iteration
(train/logprob_gap_max, train/logprob_gap_mean), and `train.tis_cap` weights it in (TIS).
Frozen agents and scripted members still play, and are never updated. An adapter shared by
several trained agents (sharing: shared) is one learner, updated once on all their turns.

Evaluation (greedy decoding on held-out task seeds) runs before the first iteration,
every `eval_every` iterations and after the last. Metrics go to `metrics.jsonl` (and
TensorBoard), checkpoints to `checkpoint/` (each learner's parameters and optimizer state,
RNG states, iteration, the number of metric lines), each written atomically; `resume`
continues a killed run to the same result. At the end, `learning.json` holds the learning
metrics (mas_credit.train.summary.learning_metrics). Training uses the first of the
experiment's seeds. This module must not define losses or estimators.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mas_credit.agents import describe_team, game_kwargs, load_critic, load_team
from mas_credit.checklist import write_run_record
from mas_credit.config import ExperimentConfig, check_memory, load_resolved, to_yaml
from mas_credit.counterfactual import fill_needs
from mas_credit.edges import fill_edge_needs
from mas_credit.estimators import get_estimator
from mas_credit.estimators.edges import get_edge_estimator
from mas_credit.games import make_game
from mas_credit.outputs import (
    MANIFEST,
    RunDirError,
    atomic_path,
    check_run_dir,
    claim_run_dir,
    is_metric_record,
    run_lock,
    write_manifest,
    write_text,
)
from mas_credit.rollout import collect, collect_tree
from mas_credit.train.learners import make_learners
from mas_credit.train.summary import render_training
from mas_credit.types import CreditBatch, EdgeBatch, informing_credit, resolve_device

EVAL_SALT = 0xE7A1


class Trainer:
    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, progress: bool = True):
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        self.seed = int(cfg.seeds[0])
        self.games = [make_game(g.name, **game_kwargs(g, cfg.team)) for g in cfg.games]
        self.n_agents = self.games[0].n_agents
        self.team = load_team(cfg.team, n_agents=self.n_agents, sequential=any(g.sequential for g in self.games))
        e = cfg.estimators[0]
        self.estimator, self.est_label = get_estimator(e.name), e.label or e.name
        self.est_cfg = self.estimator.make_config(e)
        self.needs = self.estimator.needs(self.est_cfg, self.n_agents)
        self.informing = float(cfg.train.informing_credit)
        edge = cfg.edges.estimators[0] if cfg.edges.estimators else None
        self.edge_estimator = get_edge_estimator(edge.name if edge else "edge_shapley")
        self.edge_cfg = self.edge_estimator.make_config(edge)
        wants_critic = self.needs.critic or (self.informing > 0 and self.edge_estimator.needs(self.edge_cfg, 1).critic)
        self.critic = load_critic(cfg.critic) if wants_critic else None
        trained = list(cfg.train.trained_agents) or self.team.learner_agents()
        self.learners = make_learners(self.team, trained, cfg.train)
        self.iteration = 0
        self.metric_lines = 0
        self.wall_s = 0.0  # over every session of the run (a resumed run adds to it)
        self.last_eval: dict = {}  # the latest greedy evaluation (the progress bar shows it)
        self.writer = None
        if cfg.train.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:
                self.writer = None

    # -- parameters ---------------------------------------------------------------------
    def adapter_state(self) -> dict:
        """An LLM team's every adapter's LoRA weights, frozen ones included (copies)."""
        out = {}
        for m, model in enumerate(self.team.models):
            for adapter in sorted(
                set(self.team.adapters[a] for a in range(self.n_agents) if self.team.model_index[a] == m)
            ):
                out[f"{m}/{adapter}"] = {
                    n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n and f".{adapter}." in n
                }
        return out

    # -- one iteration --------------------------------------------------------------------
    def collect(self, iteration: int):
        game = self.games[iteration % len(self.games)]
        seed = int(np.random.SeedSequence([self.seed, iteration]).generate_state(1)[0])
        if self.needs.tree_fanout:
            episodes = collect_tree(game, self.team, self.cfg.n_tasks, self.needs.tree_fanout, seed=seed)
        else:
            episodes = collect(game, self.team, self.cfg.n_tasks, self.cfg.group_size, seed=seed)
        return game, episodes

    def step(self, iteration: int) -> dict:
        start = time.perf_counter()
        tokens0 = self.team.tokens
        game, episodes = self.collect(iteration)
        rollout_s = time.perf_counter() - start
        credit_start = time.perf_counter()
        costs = fill_needs(
            game, episodes, self.needs, team=self.team, critic=self.critic, noise=self.cfg.coalition_noise
        )
        batch = CreditBatch.from_episodes(episodes)
        credit = self.estimator(batch, self.est_cfg)
        advantage = credit.advantage.detach().cpu()
        informing = {}
        if self.informing > 0:
            advantage, informing = self.add_informing(game, episodes, advantage)
        credit_s = time.perf_counter() - credit_start
        weight = credit.turn_weight.detach().cpu() if credit.turn_weight is not None else torch.ones_like(advantage)
        record = {
            "kind": "train",
            "iteration": iteration,
            "game": game.name,
            "reward": float(np.mean([ep.reward for ep in episodes])),
            "success": float(np.mean([ep.reward >= 1.0 for ep in episodes])),
            "valid_turns": float(np.mean([t.valid for ep in episodes for t in ep.turns])),
            "episode_turns": [len(ep.turns) for ep in episodes],  # for the checklist's length spread
            "episode_tokens": [sum(len(t.response_ids or []) for t in ep.turns) for ep in episodes],
            **{k: float(v) for k, v in costs.items()},
            **informing,
        }
        credit_cpu = credit.credit.detach().cpu()
        for i in range(self.n_agents):
            acted = batch.acted[:, i].cpu()
            record[f"credit/{self.est_label}/agent_{i}"] = float(credit_cpu[acted, i].mean()) if acted.any() else 0.0
        update_start = time.perf_counter()
        adv_list, weight_list = advantage.tolist(), weight.tolist()
        learner_rows = {learner: [] for learner in self.learners}
        learner_of = {agent: learner for learner in self.learners for agent in learner.agents}
        for b, ep in enumerate(episodes):  # in episode and turn order
            for k, t in enumerate(ep.turns):
                if t.agent in learner_of and t.response_ids and t.logprobs and weight_list[b][k] > 0:
                    learner_rows[learner_of[t.agent]].append(
                        {
                            "prompt": t.prompt_ids,
                            "response": t.response_ids,
                            "sampler_logprobs": t.logprobs,
                            "adv": adv_list[b][k],
                            "weight": weight_list[b][k],
                        }
                    )
        prepare_start = time.perf_counter()
        for kind in dict.fromkeys(
            type(learner) for learner in self.learners
        ):  # e.g. one reference pass for all LLM adapters
            kind.prepare_group({learner: rows for learner, rows in learner_rows.items() if type(learner) is kind})
        record["time/prepare_s"] = time.perf_counter() - prepare_start
        gaps = []
        updated = {}
        for kind in dict.fromkeys(type(learner) for learner in self.learners):  # e.g. every tabular table at once
            updated.update(kind.update_group({lr: rows for lr, rows in learner_rows.items() if type(lr) is kind}))
        for learner in self.learners:
            stats = updated[learner]
            gaps.append((stats.pop("gap_sum"), stats["gap_max"], stats["tokens"]))
            for agent in learner.agents:
                record.update({f"loss/agent_{agent}/{k}": v for k, v in stats.items()})
        tokens = sum(n for _, _, n in gaps)
        record["train/logprob_gap_max"] = max((g for _, g, _ in gaps), default=0.0)
        record["train/logprob_gap_mean"] = sum(s for s, _, _ in gaps) / tokens if tokens else 0.0
        record["time/rollout_s"] = rollout_s
        record["time/credit_s"] = credit_s
        record["time/update_s"] = time.perf_counter() - update_start
        record["time/iteration_s"] = time.perf_counter() - start
        record["time/tokens_per_s"] = (self.team.tokens - tokens0) / max(rollout_s, 1e-9)
        return record

    def add_informing(self, game, episodes, advantage: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """advantage [B, T] plus, at the turn that sent each message, `train.informing_credit` x that
        message's credit centred within its task group (the mean over the group's episodes of the
        same message slot is subtracted, as a baseline). Returns it and the metrics: the edge
        estimator's costs and `informing/agent_<i>` (mean informing credit per agent)."""
        n_edges = len(episodes[0].messages)
        costs = fill_edge_needs(
            game, episodes, self.edge_estimator.needs(self.edge_cfg, n_edges), team=self.team, critic=self.critic
        )
        edges = EdgeBatch.from_episodes(episodes)
        edge_credit = self.edge_estimator(edges, self.edge_cfg).credit.detach().cpu().to(advantage.dtype)  # [B, E]
        n_groups = int(edges.group.max()) + 1
        total = torch.zeros((n_groups, n_edges), dtype=edge_credit.dtype).index_add_(0, edges.group, edge_credit)
        count = torch.zeros(n_groups, dtype=edge_credit.dtype).index_add_(0, edges.group, torch.ones_like(edges.reward))
        centred = edge_credit - (total / count[:, None])[edges.group]  # [B, E]
        out = advantage.clone()
        rows = torch.arange(edges.batch_size)[:, None].expand(-1, n_edges)
        out.index_put_((rows.reshape(-1), edges.edge_turn.reshape(-1)), self.informing * centred.reshape(-1), True)
        per_agent = informing_credit(edge_credit, edges.sender, self.n_agents).mean(dim=0)
        metrics = {f"edges/{key.split('/', 1)[1]}": value for key, value in costs.items()}  # cf/llm_calls -> edges/...
        return out, {**metrics, **{f"informing/agent_{i}": float(per_agent[i]) for i in range(self.n_agents)}}

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, iteration: int) -> dict:
        seeds = [
            int(s) for s in np.random.SeedSequence([self.seed, EVAL_SALT]).generate_state(self.cfg.train.eval_tasks)
        ]
        record = {"kind": "eval", "iteration": iteration}
        self.team.greedy = True
        try:
            for game in self.games:
                episodes = collect(game, self.team, len(seeds), 1, seed=self.seed, task_seeds=seeds)
                prefix = "eval" if len(self.games) == 1 else f"eval/{game.name}"
                record[f"{prefix}/success"] = float(np.mean([ep.reward >= 1.0 for ep in episodes]))
                record[f"{prefix}/reward"] = float(np.mean([ep.reward for ep in episodes]))
                for i in range(self.n_agents):
                    record[f"{prefix}/correct/agent_{i}"] = float(
                        np.mean([ep.components.get("correct", [math.nan] * self.n_agents)[i] for ep in episodes])
                    )
        finally:
            self.team.greedy = False
        return record

    # -- outputs ----------------------------------------------------------------------------
    def log(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        self.metric_lines += 1
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("iteration",):
                    self.writer.add_scalar(key, value, record["iteration"])  # eval keys start with eval/
            self.writer.flush()

    def checkpoint(self) -> None:
        state = {
            "iteration": self.iteration,
            "metric_lines": self.metric_lines,
            "wall_s": self._wall(),
            "learners": {learner.name: learner.state_dict() for learner in self.learners},
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_path(self.run_dir / "checkpoint" / "state.pt") as tmp:
            torch.save(state, tmp)

    def restore(self) -> None:
        path = self.run_dir / "checkpoint" / "state.pt"
        try:
            state = torch.load(path, weights_only=False)
            learners = {learner.name: state["learners"][learner.name] for learner in self.learners}
        except Exception as err:  # noqa: BLE001 - a cut or garbled file raises EOFError, RuntimeError, UnpicklingError, ...
            raise RunDirError(
                f"{path} is damaged ({type(err).__name__}), so the run cannot resume; train it again "
                f"(mas-credit train EXPERIMENT --out {self.run_dir} --overwrite)"
            ) from None
        for learner in self.learners:
            learner.load_state_dict(learners[learner.name])
        torch.set_rng_state(state["torch_rng"])
        self.iteration, self.metric_lines, self.wall_s = (
            state["iteration"],
            state["metric_lines"],
            state.get("wall_s", 0.0),
        )
        metrics = self.run_dir / "metrics.jsonl"
        lines = metrics.read_text(errors="replace").splitlines()[
            : self.metric_lines
        ]  # what came after the checkpoint goes
        if len(lines) < self.metric_lines or not all(is_metric_record(line) for line in lines):
            raise RunDirError(
                f"{metrics}: its first {self.metric_lines} lines (the records up to the last checkpoint) are "
                f"damaged or missing, so the run cannot resume; train it again with --overwrite"
            )
        with atomic_path(self.run_dir / "metrics.jsonl") as tmp:
            tmp.write_text("".join(line + "\n" for line in lines))

    def _wall(self) -> float:
        return self.wall_s + time.perf_counter() - self.session_start

    def run(self) -> Path:
        t = self.cfg.train
        self.session_start = time.perf_counter()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / MANIFEST).unlink(missing_ok=True)  # the run changes again: a manifest only once it ends
        write_text(self.run_dir / "config.yaml", to_yaml(self.cfg))
        if self.iteration == 0 and self.metric_lines == 0:
            (self.run_dir / "metrics.jsonl").write_text("")
            self.last_eval = self.evaluate(0)
            self.log(self.last_eval)
        bar = tqdm(
            range(self.iteration, t.iterations),
            initial=self.iteration,
            total=t.iterations,
            desc="train",
            unit="it",
            disable=not self.progress,
            leave=True,
        )  # a finished bar ends its line
        for iteration in bar:
            record = self.step(iteration)
            self.log(record)
            self.iteration = iteration + 1
            if self.iteration % t.eval_every == 0 or self.iteration == t.iterations:
                self.last_eval = self.evaluate(self.iteration)
                self.log(self.last_eval)
            bar.set_postfix(progress_fields(record, self.last_eval))
            if self.iteration % t.checkpoint_every == 0 or self.iteration == t.iterations:
                self.checkpoint()
        bar.close()
        description = describe_team(self.team)
        write_run_record(
            self.run_dir,
            "train",
            self._wall(),
            description,
            {description["device"].split(":")[0], resolve_device(self.est_cfg.device).type},
        )
        write_manifest(self.run_dir)
        render_training(self.run_dir, plots=t.plots)
        return self.run_dir


def progress_fields(record: dict, last_eval: dict) -> dict:
    """What the progress bar shows after an iteration: sampled team success, the share of
    turns that parsed, and the latest greedy evaluation's success (held-out tasks)."""
    fields = {"success": f"{record['success']:.2f}", "valid": f"{record['valid_turns']:.2f}"}
    evals = [v for k, v in last_eval.items() if k.startswith("eval") and k.endswith("/success")]
    if evals:
        fields["eval"] = f"{sum(evals) / len(evals):.2f}"
    return fields


def train(
    cfg: ExperimentConfig, out_dir: str | Path | None = None, progress: bool = True, overwrite: bool = False
) -> Path:
    """Train from scratch; returns the run folder (see `claim_run_dir`: a folder holding another
    run is refused unless `overwrite`; a taken default folder gets a suffix)."""
    check_memory(cfg, 1, cfg.name)  # one iteration's episodes are held at a time
    run_dir = check_run_dir(
        Path(out_dir) if out_dir is not None else Path(cfg.output_dir) / cfg.name,
        "train",
        overwrite=overwrite,
        default=out_dir is None,
    )
    with run_lock(run_dir):  # one process per folder (a second train or resume there stops with one line)
        return Trainer(cfg, claim_run_dir(run_dir, "train", overwrite=overwrite), progress).run()


def resume(run_dir: str | Path, progress: bool = True) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoint" / "state.pt").is_file():
        raise FileNotFoundError(f"{run_dir} has no checkpoint/state.pt to resume from; start it with mas-credit train")
    with run_lock(run_dir):
        cfg = load_resolved(run_dir / "config.yaml")
        trainer = Trainer(cfg, run_dir, progress)
        trainer.restore()
        return trainer.run()
