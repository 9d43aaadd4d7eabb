"""Per-agent update time of the trainer versus a raw forward + backward over the same
tokens (SmolLM2 with a LoRA adapter per agent by default).

One iteration of episodes is collected once; then we time
  raw        one plain forward + backward of sum(log-probs) over agent 0's turns (prompt +
             response per row, as in `model(input_ids)`), same micro-batches
  raw shared the same with each distinct prompt encoded once (what the trainer does when
             a task group's episodes share a prompt; `response_logprobs(share_prompts=True)`)
  update     `LLMLearner.update` on agent 0's turns (policy forward + backward, whose first epoch
             also gives the old log-probs, clipped loss with KL, gradient clipping, AdamW
             step), once with prompts shared and once without; the trainer's own choice
             (`train.share_prompts: auto`: shared on a CPU, not on a GPU) is the one reported
  reference  `LLMLearner.prepare_group`: the one gradient-free pass of the base model (adapters
             off) over every trained agent's turns that all their updates share (kl_coef > 0)
  fused      `LLMLearner.update` with `train.fuse_reference: on` (kl_coef > 0): the reference
             log-probs from each micro-batch's copy in the first epoch's forward, the copy with
             the adapter's output zeroed, and no reference pass (`auto`: on a GPU, not on a CPU)
each the median of --repeats runs, in the same process (CUDA synchronised before and after
each run), in rounds that run every side in turn after one untimed round. Per agent, an update
costs update + reference / (trained adapters), or the fused update alone; target: the trainer's
choice is at most 1.2x raw. Against "raw shared" the ratio is the trainer's own overhead.

--profile adds one torch.profiler run of each (raw, the update without and with the fused reference, reference):
how many aten operator calls and CUDA kernel launches it makes, and its top operators by
self host time (and by CUDA time where there is a GPU). At this model size a GPU pass is bound
by launches, so the counts say where an update's time goes beyond raw's. The update is also
timed with gradient clipping and the AdamW step left out, which splits its cost beyond raw.
Usage: python benchmarks/train.py [--repeats 3] [--kl-coef 0.02] [--profile] [OVERRIDE ...]
       (OVERRIDEs are experiment overrides, e.g. team.model=tiny for the tiny random Llama)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mas_credit.config import load_experiment  # noqa: E402
from mas_credit.train.learners import LLMLearner, adapter_output_layers, token_chunks  # noqa: E402
from mas_credit.train.loss import response_logprobs  # noqa: E402
from mas_credit.train.trainer import Trainer  # noqa: E402


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")


def profile_counts(label, fn, rows=8):
    """Profile one run of fn: print its aten operator calls, kernel launches and top operators."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    synchronize()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        fn()
        synchronize()
    events = prof.key_averages()
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    launches = sum(e.count for e in events if e.key in LAUNCHES)
    print(f"profile {label}: {ops} aten operator calls, {launches} CUDA kernel launches")
    # a pass bound by launches spends its time on the host: the top operators by host time, then by GPU time
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows))
    if cuda:
        print(events.table(sort_by="self_cuda_time_total", row_limit=rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="experiments/train_trio.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kl-coef", type=float, default=0.02)
    parser.add_argument("--profile", action="store_true", help="also profile one run of each (operator counts)")
    parser.add_argument("overrides", nargs="*", help="experiment overrides, e.g. team.model=tiny")
    args = parser.parse_args()
    cfg = load_experiment(
        args.experiment, [f"train.kl_coef={args.kl_coef}", "train.tensorboard=false", *args.overrides]
    )
    trainer = Trainer(cfg, Path("/tmp/mas-credit-bench-train"), progress=False)
    _, episodes = trainer.collect(0)
    learner_rows = {
        learner: [
            {
                "prompt": t.prompt_ids,
                "response": t.response_ids,
                "sampler_logprobs": t.logprobs,
                "adv": 1.0,
                "weight": 1.0,
            }
            for ep in episodes
            for t in ep.turns
            if t.agent in learner.agents and t.response_ids
        ]
        for learner in trainer.learners
    }
    learner = next(lr for lr in trainer.learners if 0 in lr.agents)
    rows = learner_rows[learner]
    model, params = learner.model, learner.params
    temperature = trainer.team.cfg.temperature
    tokens = sum(len(r["prompt"]) + len(r["response"]) for r in rows)
    device, dtype = trainer.team.device, next(model.parameters()).dtype
    print(
        f"{cfg.team.model} on {device} ({dtype}), agent 0: {len(rows)} turns, {tokens} prompt + response tokens, "
        f"token budget {cfg.train.token_budget}, kl_coef {cfg.train.kl_coef}, {torch.get_num_threads()} CPU threads; "
        f"the trainer shares prompts here: {learner.share_prompts}"
    )

    def raw(share_prompts):
        for p in params:
            p.requires_grad_(True)
        model.set_adapter(learner.adapter)
        for chunk in token_chunks(sorted(rows, key=lambda r: (len(r["prompt"]), r["prompt"])), cfg.train.token_budget):
            logp, _ = response_logprobs(
                model, [(r["prompt"], r["response"]) for r in chunk], temperature, share_prompts
            )
            logp.sum().backward()
        for p in params:
            p.grad = None
            p.requires_grad_(False)

    snapshot = [p.detach().clone() for p in params]
    chosen, chosen_fuse = learner.share_prompts, learner.fuse_reference
    outputs = adapter_output_layers(model, learner.adapter) if cfg.train.kl_coef > 0 else None  # None: cannot fuse

    def separate_reference():
        """prepare_group's one pass for every learner (none fuses while it runs): every row gets its ref_slot"""
        saved = [(lr, lr.fuse_reference) for lr in learner_rows]
        for lr, _ in saved:
            lr.fuse_reference = False
        try:
            LLMLearner.prepare_group(learner_rows)
        finally:
            for lr, fuse in saved:
                lr.fuse_reference = fuse

    def update(shared, step=True, fuse=False):
        """learner.update with this prompt sharing and reference (fused: computed in the update; otherwise the rows'
        from the separate pass); step=False leaves out gradient clipping and the AdamW step (update minus that is
        their cost; that minus raw, the loss and the bookkeeping's)"""
        learner.share_prompts, learner.fuse_reference, learner.adapter_outputs = shared, fuse, outputs if fuse else None
        saved = torch.nn.utils.clip_grad_norm_, learner.optimizer.step
        if not step:
            torch.nn.utils.clip_grad_norm_ = lambda params, max_norm: torch.zeros((), device=device)
            learner.optimizer.step = lambda: None
        try:
            learner.update(rows)
        finally:
            torch.nn.utils.clip_grad_norm_, learner.optimizer.step = saved
            learner.share_prompts, learner.fuse_reference = chosen, chosen_fuse
            learner.adapter_outputs = outputs if chosen_fuse else None

    if cfg.train.kl_coef > 0:
        separate_reference()
    sides = {
        "raw": lambda: raw(False),
        "raw shared": lambda: raw(True),
        "reference": separate_reference if cfg.train.kl_coef > 0 else lambda: None,
        "update shared": lambda: update(True),
        "update plain": lambda: update(False),
        "update no step": lambda: update(chosen, step=False, fuse=chosen_fuse),
    }
    if outputs is not None:
        sides["update fused"] = lambda: update(False, fuse=True)
    # rounds of every side in turn, after one untimed round: a GPU's clocks rise while it works, so timing
    # one side's repeats before the next would favour whichever runs later
    times = {name: [] for name in sides}
    for timed_round in [False] + [True] * args.repeats:
        for name, fn in sides.items():
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            if timed_round:
                times[name].append(time.perf_counter() - start)
            with torch.no_grad():  # every update starts from the same parameters
                for p, s in zip(params, snapshot):
                    p.copy_(s)
    median = {name: statistics.median(t) for name, t in times.items()}
    t_raw, t_raw_shared, t_no_step = median["raw"], median["raw shared"], median["update no step"]
    t_reference = median["reference"] if cfg.train.kl_coef > 0 else 0.0
    t_updates = {True: median["update shared"], False: median["update plain"]}
    t_fused = median.get("update fused")
    t_update = t_fused if chosen_fuse else t_updates[chosen]
    if args.profile:
        profile_counts("raw forward + backward", lambda: raw(False))
        variants = [("prompts shared" if chosen else "one pass", lambda: update(chosen))]
        if outputs is not None:  # the fused update as well, whichever the trainer chose
            variants.append(("reference fused", lambda: update(False, fuse=True)))
        for label, fn in variants:
            profile_counts(f"update ({label})", fn)
            with torch.no_grad():
                for p, s in zip(params, snapshot):
                    p.copy_(s)
        if cfg.train.kl_coef > 0:
            profile_counts("reference pass", separate_reference)
    share = t_reference / len(learner_rows)
    print(
        f"raw forward + backward {t_raw:.3f} s (with shared prompts {t_raw_shared:.3f} s); trainer update "
        f"{t_update:.3f} s "
        f"(prompts shared: {t_updates[True]:.3f} s, not shared: {t_updates[False]:.3f} s"
        + (f", reference fused: {t_fused:.3f} s" if t_fused is not None else "")
        + f"); shared reference pass {t_reference:.3f} s over {len(learner_rows)} adapters' turns"
    )
    t_same = t_raw_shared if chosen else t_raw  # raw with the update's own prompt sharing
    print(f"update / raw = {t_update / t_raw:.2f}x; update / raw shared = {t_update / t_raw_shared:.2f}x")
    print(
        f"update beyond raw{' shared' if chosen else ''}: {1000 * (t_update - t_same):.1f} ms = loss and bookkeeping "
        f"{1000 * (t_no_step - t_same):.1f} ms + gradient clipping and AdamW step "
        f"{1000 * (t_update - t_no_step):.1f} ms (the update without them: {t_no_step:.3f} s)"
    )
    separate = (t_updates[chosen] + share) / t_raw
    fused = f"{t_fused / t_raw:.3f}x" if t_fused is not None else "n/a (kl_coef 0 or not plain LoRA)"
    per_agent = t_fused / t_raw if chosen_fuse else separate
    print(
        f"per agent, the trainer's choice (reference fused: {chosen_fuse}): {per_agent:.3f}x raw (target <= 1.2x); "
        f"(update + reference / {len(learner_rows)}) / raw = {separate:.3f}x; fused update / raw = {fused}; "
        f"the trainer's choice / raw shared = {per_agent * t_raw / t_raw_shared:.2f}x"
    )


if __name__ == "__main__":
    main()
