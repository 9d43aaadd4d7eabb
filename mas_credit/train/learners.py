"""Learners: what the trainer updates. A learner owns the parameters of one or more agents'
policy (an LLM adapter, a tabular policy), recomputes the log-probabilities of their turns,
and takes the optimizer step. The trainer loop only ever calls

    Learner.prepare_group({learner: rows, ...})   once per learner class and iteration
    Learner.update_group({learner: rows, ...})    -> {learner: stats}, once per learner class
    learner.state_dict() / load_state_dict(state)   checkpoints

so it never branches on the kind of learner. `update_group` is `learner.update(rows)` for each
learner unless a class can do better: the tabular learners of a team update together, as one
vectorised step over their stacked tables (`TabularLearner.update_group`, checked against
`PolicyLearner.update` with torch's Adam learner by learner in the tests). `PolicyLearner.update`
is the update they all share: epochs over micro-batches, old log-probs from the first epoch's forward (before any
step, so the first ratio is exactly 1), the clipped surrogate with KL and optional TIS
(mas_credit.train.loss), gradient clipping, one optimizer step per epoch. A subclass says
only how to compute its log-probs.

Rows (one per trained turn): prompt, response (token ids; a tabular turn's "prompt" is
[key, *legal actions] and its "response" [chosen action], as indices), sampler_logprobs,
adv, weight; with kl_coef > 0 also the reference log-probs, as "ref_slot" (table, row) from
`prepare_group` or "ref" given by hand (`reference_rows`). This module must not know about
games, estimators or rollouts.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from mas_credit.agents.protocol import ModelTeam
from mas_credit.agents.tabular import MixedTeam
from mas_credit.config import ConfigError
from mas_credit.train.loss import policy_loss, response_logprobs, right_padded


def token_chunks(rows, budget: int):
    """Consecutive micro-batches of at most `budget` prompt + response tokens (at least one row each)."""
    batch, used = [], 0
    for row in rows:
        size = len(row["prompt"]) + len(row["response"])
        if batch and used + size > budget:
            yield batch
            batch, used = [], 0
        batch.append(row)
        used += size
    if batch:
        yield batch


class PolicyLearner:
    """The shared update (see the module docstring). Subclasses set `name`, `agents`,
    `params`, `optimizer`, `device`, `kl_coef` and implement `logprobs(pairs)`; they may
    override `begin`/`end` (make the parameters trainable, pick the adapter) and
    `chunks(rows)` (micro-batching)."""

    name: str
    agents: list[int]
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    device: torch.device
    kl_coef: float = 0.0
    fuse_reference: bool = False
    """True: the reference log-probs come from `first_logprobs`, not from `prepare_group`"""

    def __init__(self, train_cfg):
        self.cfg = train_cfg

    @classmethod
    def prepare_group(cls, learner_rows: dict) -> None:
        """Work shared by every learner of this class before their updates (e.g. one
        reference pass); none by default."""

    @classmethod
    def update_group(cls, learner_rows: dict) -> dict:
        """Every learner of this class updated on its rows: {learner: stats} (`update`'s stats)."""
        return {learner: learner.update(rows) for learner, rows in learner_rows.items()}

    def logprobs(self, pairs: list[tuple[list[int], list[int]]]):
        """logp [M, L], mask [M, L] of each row's response after its prompt, with gradients."""
        raise NotImplementedError

    def first_logprobs(self, chunk: dict):
        """The first epoch's logp, mask of a micro-batch (detached, its old log-probs). A learner
        with `fuse_reference` also puts the micro-batch's reference log-probs in chunk["ref"]."""
        return self.logprobs(chunk["pairs"])

    def begin(self) -> None:
        for p in self.params:
            p.requires_grad_(True)

    def end(self) -> None:
        for p in self.params:
            p.requires_grad_(False)

    def chunks(self, rows: list[dict]) -> list[list[dict]]:
        return [rows]

    def update(self, rows: list[dict]) -> dict:
        """Clipped policy-gradient epochs on these turns. Stats: pg, kl, clip_frac (last
        epoch), ratio_dev_first (largest |ratio - 1| in the first epoch: 0), grad_norm,
        turns, tokens, the sampler/trainer gap |old - sampler| (gap_max, gap_mean; gap_sum
        for the iteration's mean), and adv_var (the weighted variance of the advantages)."""
        stats = {
            "pg": 0.0,
            "kl": 0.0,
            "clip_frac": 0.0,
            "ratio_dev_first": 0.0,
            "grad_norm": 0.0,
            "turns": float(len(rows)),
            "tokens": 0.0,
            "gap_max": 0.0,
            "gap_mean": 0.0,
            "gap_sum": 0.0,
            "adv_var": 0.0,
        }
        if not rows:
            return stats
        self.begin()
        t = self.cfg
        rows = sorted(rows, key=lambda r: (len(r["prompt"]), r["prompt"]))  # equal prompts share a micro-batch
        normaliser = sum(r["weight"] * len(r["response"]) for r in rows)
        chunks = [self._chunk_inputs(chunk) for chunk in self.chunks(rows)]
        zero = torch.zeros((), device=self.device)
        gap_sum, gap_max, ratio_dev = zero, zero, zero
        for epoch in range(t.epochs):
            self.optimizer.zero_grad(set_to_none=True)
            sums = {"pg": zero, "kl": zero, "clipped": zero}
            for chunk in chunks:
                logp, mask = self.first_logprobs(chunk) if epoch == 0 else self.logprobs(chunk["pairs"])
                if epoch == 0:
                    chunk["old"] = logp.detach()
                    gap = torch.where(mask, (chunk["old"] - chunk["sampler"]).abs(), torch.zeros_like(logp))
                    gap_sum, gap_max = gap_sum + gap.sum(), torch.maximum(gap_max, gap.max())
                    if t.tis_cap > 0:
                        chunk["tis"] = torch.exp(chunk["old"] - chunk["sampler"]).clamp(max=t.tis_cap)
                ref = chunk["ref"] if self.kl_coef > 0 else logp.detach()
                loss, part = policy_loss(
                    logp,
                    chunk["old"],
                    ref,
                    chunk["adv"].expand_as(logp),
                    chunk["weight"] * mask,
                    t.clip_eps,
                    self.kl_coef,
                    normaliser,
                    chunk.get("tis"),
                )
                loss.backward()
                sums = {k: sums[k] + part[k] for k in sums}
                if epoch == 0:
                    ratio_dev = torch.maximum(ratio_dev, part["ratio_dev"])
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, t.max_grad_norm)
            self.optimizer.step()
        self.end()
        # one copy back (one device sync) for every statistic, not one per statistic
        pg, kl, clipped, ratio_dev, grad_norm, gap_max, gap_sum = torch.stack(
            [sums["pg"], sums["kl"], sums["clipped"], ratio_dev, grad_norm, gap_max, gap_sum]
        ).tolist()
        response_tokens = sum(len(r["response"]) for r in rows)
        weight_sum = sum(r["weight"] for r in rows)
        mean = sum(r["adv"] * r["weight"] for r in rows) / weight_sum
        stats.update(
            pg=pg,
            kl=kl,
            clip_frac=clipped / response_tokens,
            ratio_dev_first=ratio_dev,
            grad_norm=grad_norm,
            tokens=float(response_tokens),
            gap_max=gap_max,
            gap_mean=gap_sum / response_tokens,
            gap_sum=gap_sum,
            adv_var=sum(r["weight"] * (r["adv"] - mean) ** 2 for r in rows) / weight_sum,
        )
        return stats

    def _chunk_inputs(self, chunk: list[dict]) -> dict:
        """A micro-batch's fixed inputs, built once for every epoch and moved to the device in
        one copy each: pairs, sampler log-probs, advantage [M, 1], turn weight [M, 1], and
        reference log-probs [M, L] when kl_coef > 0 (each [M, L] right-padded with 0)."""
        out = {
            "pairs": [(r["prompt"], r["response"]) for r in chunk],
            "sampler": right_padded([r["sampler_logprobs"] for r in chunk], torch.float32).to(self.device),
            "adv": torch.tensor([[r["adv"]] for r in chunk], dtype=torch.float32).to(self.device),
            "weight": torch.tensor([[r["weight"]] for r in chunk], dtype=torch.float32).to(self.device),
        }
        if self.kl_coef > 0 and not self.fuse_reference:
            if any("ref" not in r and "ref_slot" not in r for r in chunk):
                raise ValueError(
                    f"learner {self.name}: kl_coef > 0 needs reference log-probs: call prepare_group first"
                )
            out["ref"] = reference_rows(chunk)
        return out

    def state_dict(self) -> dict:
        return {"params": [p.detach().clone() for p in self.params], "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for p, value in zip(self.params, state["params"]):
                p.copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])


class LLMLearner(PolicyLearner):
    """One LoRA adapter of an LLM team (the agents that play it): token-level log-probs in
    the training dtype, micro-batches by token budget, KL to the base model (adapters off)."""

    def __init__(self, team, model_index: int, adapter: str, agents: list[int], train_cfg):
        super().__init__(train_cfg)
        self.team, self.model_index, self.adapter, self.agents = team, model_index, adapter, list(agents)
        self.name = f"{model_index}/{adapter}"
        self.model = team.models[model_index]
        self.params = [p for n, p in self.model.named_parameters() if "lora_" in n and f".{adapter}." in n]
        self.device = next(self.model.parameters()).device
        # fused: one kernel for the whole step over every LoRA tensor (a GPU update is bound by kernel launches);
        # torch's default elsewhere
        fused = True if self.device.type in ("cuda", "cpu") else None
        self.optimizer = torch.optim.AdamW(self.params, lr=train_cfg.lr, weight_decay=0.0, fused=fused)
        self.kl_coef = train_cfg.kl_coef
        self.temperature = team.cfg.temperature if team.cfg.temperature > 0 else 1.0
        # on a GPU, bound by kernel launches, a doubled first-epoch batch costs less than a reference pass of its
        # own; on a CPU it costs its compute (benchmarks/train.py measures both)
        fuse = {"on": True, "off": False}.get(
            train_cfg.fuse_reference, self.device.type == "cuda" and train_cfg.share_prompts != "on"
        )
        self.adapter_outputs = adapter_output_layers(self.model, adapter) if fuse and self.kl_coef > 0 else None
        if train_cfg.fuse_reference == "on" and self.kl_coef > 0 and self.adapter_outputs is None:
            raise ConfigError(  # the CLI's exit 2 with this line, not a traceback
                f"train.fuse_reference: on needs plain LoRA adapters on linear layers; adapter {adapter} has other "
                "kinds (embedding LoRA, DoRA or another variant): set train.fuse_reference to auto or off"
            )
        self.fuse_reference = self.adapter_outputs is not None
        # encoding each distinct prompt once wins on a CPU and loses on a GPU (benchmarks/train.py measures both);
        # a fused reference needs one-pass rows
        self.share_prompts = {"on": True, "off": False}.get(
            train_cfg.share_prompts, self.device.type == "cpu" and not self.fuse_reference
        )

    def begin(self) -> None:
        for p in self.model.parameters():
            p.requires_grad_(False)
        super().begin()
        self.model.set_adapter(self.adapter)

    def chunks(self, rows):
        return list(token_chunks(rows, self.cfg.token_budget))

    def logprobs(self, pairs):
        return response_logprobs(self.model, pairs, self.temperature, self.share_prompts)

    def first_logprobs(self, chunk):
        """With `fuse_reference`: the micro-batch's rows twice over in one forward, the second copy
        with this adapter's output zeroed (the base model: the reference, as `prepare_group`
        computes it with the adapter disabled). The copy gets no gradient (the loss never reads
        it), so the update is the plain one's."""
        if not self.fuse_reference:
            return super().first_logprobs(chunk)
        pairs, m = chunk["pairs"], len(chunk["pairs"])
        keep = torch.tensor([1.0] * m + [0.0] * m, dtype=self.adapter_outputs[0].weight.dtype)
        with rows_without_adapter(self.adapter_outputs, keep.view(-1, 1, 1).to(self.device)):
            logp, mask = response_logprobs(self.model, pairs + pairs, self.temperature, share_prompts=False)
        chunk["ref"] = logp[m:].detach()
        return logp[:m], mask[:m]

    @classmethod
    def prepare_group(cls, learner_rows: dict) -> None:
        """Add "ref" (the reference policy's log-probs of each response token) to every row.

        The reference is the base model with adapters switched off, so it is the same for
        every adapter on a model: one gradient-free pass per model over all its learners'
        turns serves every update and every epoch.
        """
        by_model: dict[int, list] = {}
        for learner, rows in learner_rows.items():
            if learner.kl_coef > 0 and not learner.fuse_reference:  # a fused learner computes it in its update
                by_model.setdefault(learner.model_index, []).append((learner, rows))
        for members in by_model.values():
            learner = members[0][0]
            rows = sorted((r for _, rs in members for r in rs), key=lambda r: (len(r["prompt"]), r["prompt"]))
            budget = (
                REFERENCE_BUDGET * learner.cfg.token_budget
            )  # no gradients: no activations kept, so larger micro-batches
            with torch.inference_mode(), learner.model.disable_adapter():
                parts = [
                    response_logprobs(
                        learner.model,
                        [(r["prompt"], r["response"]) for r in chunk],
                        learner.temperature,
                        learner.share_prompts,
                    )[0]
                    for chunk in token_chunks(rows, budget)
                ]
            # one table [rows, longest response] on the device (no copy back); each row keeps its slot in it,
            # so an update gathers a micro-batch's reference in one index_select (reference_rows)
            longest = max(part.shape[1] for part in parts)
            table = torch.cat([torch.nn.functional.pad(part, (0, longest - part.shape[1])) for part in parts])
            for m, r in enumerate(rows):
                r["ref_slot"] = (table, m)


def reference_rows(rows: list[dict]) -> torch.Tensor:
    """The rows' reference log-probs as one right-padded float32 tensor [M, longest response].

    A row holds them as "ref_slot" (table, index), from `prepare_group` (whose table is 0 past
    each row's response, as `response_logprobs` pads), or as "ref", a tensor
    [its response length] given by hand. Rows from one table are gathered with one
    index_select (one operator, not several per row: on a GPU host each costs launch time);
    any other mix is padded row by row."""
    slots = [r.get("ref_slot") for r in rows]
    if all(slots) and len({id(table) for table, _ in slots}) == 1:
        table = slots[0][0]
        index = torch.tensor([m for _, m in slots]).to(table.device)
        return table.index_select(0, index)[:, : max(len(r["response"]) for r in rows)].float()
    per_row = [r["ref"] if slot is None else slot[0][slot[1], : len(r["response"])] for r, slot in zip(rows, slots)]
    return torch.nn.utils.rnn.pad_sequence([ref.float() for ref in per_row], batch_first=True)


def adapter_output_layers(model, adapter: str) -> list[torch.nn.Module] | None:
    """Every `lora_B[adapter]` of a peft LoRA model: the layers whose outputs, scaled and added to
    their base layers', are the adapter's whole contribution. None where the adapter also has
    other kinds (embedding LoRA, DoRA or another variant), or none at all."""
    layers = []
    for module in model.modules():
        if adapter in getattr(module, "lora_embedding_A", {}) or adapter in getattr(module, "lora_variant", {}):
            return None
        if adapter in getattr(module, "lora_A", {}):
            if adapter not in getattr(module, "lora_B", {}):
                return None
            layers.append(module.lora_B[adapter])
    return layers or None


@contextmanager
def rows_without_adapter(layers: list[torch.nn.Module], keep: torch.Tensor):
    """Within the block, each layer's output is multiplied by keep [B, 1, 1] (1 = the row keeps
    the adapter, 0 = its output is zeroed: the row sees the base model), by forward hooks that
    are removed on the way out."""

    def hook(_layer, _inputs, out):
        if out.dim() != 3 or out.shape[0] != keep.shape[0]:  # [B, T, features] only: no silent broadcast
            raise RuntimeError(f"rows_without_adapter: output {tuple(out.shape)} is not [{keep.shape[0]}, T, F]")
        return out * keep

    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


REFERENCE_BUDGET = 4
"""the gradient-free reference pass takes micro-batches of this many times train.token_budget
(on a GPU, where small passes are bound by kernel launches, fewer passes are faster)"""


class TabularLearner(PolicyLearner):
    """One tabular member's softmax policy: logits [keys, actions]; a turn's log-prob is the
    log-softmax of its key's row over its legal actions, at the chosen one. No KL term (there
    is no base model to stay near); its own Adam learning rate (the member's `lr`).

    A team's tabular learners update together (`update_group`): their tables stacked [L, K, A],
    one forward and one backward for all their rows, the gradient clipped learner by learner, and
    Adam (torch's defaults: betas 0.9, 0.999, eps 1e-8) applied to the stack with each learner's
    rate and its own moments. The numbers are `PolicyLearner.update`'s with torch's Adam, learner
    by learner (tested); 64 learners cost about what one did."""

    device = torch.device("cpu")
    BETAS = (0.9, 0.999)
    ADAM_EPS = 1e-8

    def __init__(self, policy, agent: int, train_cfg):
        super().__init__(train_cfg)
        self.policy, self.agents, self.name = policy, [agent], f"tabular/agent_{agent}"
        self.adam: dict | None = None  # {"step": int, "exp_avg": [K, A], "exp_avg_sq": [K, A]}

    # the table is built from the first game the member plays (or a checkpoint), so are these
    @property
    def params(self):
        return [self.policy.logits]

    @property
    def optimizer(self):
        raise AttributeError(f"{self.name} keeps its Adam moments itself (`adam`); it updates through update_group")

    def logprobs(self, pairs):
        return self.policy.logprobs(pairs), torch.ones((len(pairs), 1), dtype=torch.bool)

    def update(self, rows: list[dict]) -> dict:
        return self.update_group({self: rows})[self]

    @classmethod
    def update_group(cls, learner_rows: dict) -> dict:
        out = {learner: _empty_stats(len(rows)) for learner, rows in learner_rows.items()}
        shapes: dict[tuple, list] = {}  # learners whose tables stack (a team's members play one game)
        for learner, rows in learner_rows.items():
            if rows:
                shapes.setdefault(tuple(learner.policy.logits.shape), []).append(learner)
        for group in shapes.values():
            out.update(_tabular_step(group, [learner_rows[learner] for learner in group], group[0].cfg))
        return out

    def state_dict(self) -> dict:
        adam = (
            None if self.adam is None else {k: (v.clone() if torch.is_tensor(v) else v) for k, v in self.adam.items()}
        )
        return {"policy": self.policy.state_dict(), "adam": adam}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.adam = None
        if state.get("adam") is not None:
            self.adam = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in state["adam"].items()}
        elif state.get("optimizer"):  # a checkpoint written with torch's Adam (before update_group)
            moments = state["optimizer"]["state"].get(0)
            if moments:
                self.adam = {
                    "step": int(moments["step"]),
                    "exp_avg": moments["exp_avg"].clone(),
                    "exp_avg_sq": moments["exp_avg_sq"].clone(),
                }


def _empty_stats(turns: int) -> dict:
    keys = ("pg", "kl", "clip_frac", "ratio_dev_first", "grad_norm", "tokens", "gap_max", "gap_mean", "gap_sum")
    return {**dict.fromkeys(keys, 0.0), "turns": float(turns), "adv_var": 0.0}


def _tabular_step(learners: list, rows_of: list[list[dict]], t) -> dict:
    """The clipped policy-gradient epochs of several tabular learners at once (their tables have one
    shape): `PolicyLearner.update`'s arithmetic, row for row, on stacked tensors; returns {learner: stats}."""
    n = len(learners)
    rows = [(k, r) for k, part in enumerate(rows_of) for r in part]
    who = torch.tensor([k for k, _ in rows])  # [M] the learner of each row
    legal = right_padded([r["prompt"][1:] for _, r in rows], torch.long)  # [M, W], one tensor call
    valid = right_padded([[True] * (len(r["prompt"]) - 1) for _, r in rows], torch.bool, False)
    key = torch.tensor([r["prompt"][0] for _, r in rows])
    chosen = torch.tensor([r["prompt"][1:].index(r["response"][0]) for _, r in rows])
    sampler = torch.tensor([r["sampler_logprobs"][0] for _, r in rows], dtype=torch.float32)
    adv = torch.tensor([r["adv"] for _, r in rows], dtype=torch.float32)
    weight = torch.tensor([r["weight"] for _, r in rows], dtype=torch.float32)
    normaliser = torch.zeros(n, dtype=torch.float64).index_add_(0, who, weight.double() * 1.0)  # one token a turn
    share = weight / normaliser[who].float()  # [M]: w / sum_tokens w of its learner
    temperature = torch.tensor(
        [p.temperature if p.temperature > 0 else 1.0 for p in (lr.policy for lr in learners)], dtype=torch.float64
    )
    lr = torch.tensor([learner.policy.lr for learner in learners], dtype=torch.float64)
    table = torch.stack([learner.policy.logits.detach() for learner in learners]).requires_grad_(True)  # [L, K, A]
    fresh = {"step": 0, "exp_avg": torch.zeros_like(table[0]), "exp_avg_sq": torch.zeros_like(table[0])}
    moments = [learner.adam or fresh for learner in learners]
    exp_avg = torch.stack([m["exp_avg"] for m in moments])
    exp_avg_sq = torch.stack([m["exp_avg_sq"] for m in moments])
    steps = torch.tensor([m["step"] for m in moments], dtype=torch.float64)
    beta1, beta2 = TabularLearner.BETAS

    def per_learner(x, reduce="sum"):
        base = torch.zeros(n, dtype=x.dtype)
        if reduce == "sum":
            return base.index_add_(0, who, x)
        return base.scatter_reduce_(0, who, x, reduce="amax", include_self=True)

    for epoch in range(t.epochs):
        scores = table[who[:, None], key[:, None], legal] / temperature[who][:, None]  # [M, W]
        scores = scores.masked_fill(~valid, float("-inf"))
        logp = torch.log_softmax(scores, dim=1).gather(1, chosen[:, None])[:, 0].float()  # [M]
        if epoch == 0:
            old = logp.detach()
            gap = (old - sampler).abs()
            tis = torch.exp(old - sampler).clamp(max=t.tis_cap) if t.tis_cap > 0 else None
        ratio = torch.exp(logp - old)
        clipped = torch.clamp(ratio, 1.0 - t.clip_eps, 1.0 + t.clip_eps)
        pg = -torch.minimum(ratio * adv, clipped * adv)
        if tis is not None:
            pg = pg * tis
        (pg * share).sum().backward()
        with torch.no_grad():
            on = weight > 0
            if epoch == 0:
                ratio_dev = per_learner(torch.where(on, (ratio - 1).abs(), torch.zeros_like(ratio)), "amax")
            pg_sum = per_learner((pg * share).detach())
            clipped_count = per_learner((((ratio - clipped).abs() > 1e-9) & on).float())
            grad = table.grad
            grad_norm = grad.flatten(1).norm(dim=1)  # [L] each learner's, as clip_grad_norm_ over its table
            grad *= (t.max_grad_norm / (grad_norm + 1e-6)).clamp(max=1.0)[:, None, None]
            steps += 1.0
            exp_avg.lerp_(grad, 1.0 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            step_size = (lr / (1.0 - beta1**steps))[:, None, None]
            denom = (exp_avg_sq.sqrt() / torch.sqrt(1.0 - beta2**steps)[:, None, None]).add_(TabularLearner.ADAM_EPS)
            table.sub_(step_size * exp_avg / denom)  # torch's addcdiv_(exp_avg, denom, value=-step_size), per learner
            table.grad = None
    with torch.no_grad():
        for k, learner in enumerate(learners):
            learner.policy.logits.copy_(table[k])
            learner.adam = {"step": int(steps[k]), "exp_avg": exp_avg[k].clone(), "exp_avg_sq": exp_avg_sq[k].clone()}
    tokens = per_learner(torch.ones_like(weight, dtype=torch.float64))
    gap_sum, gap_max = per_learner(gap.double()), per_learner(gap.double(), "amax")
    w = weight.double()
    mean = per_learner(w * adv.double()) / per_learner(w)
    adv_var = per_learner(w * (adv.double() - mean[who]) ** 2) / per_learner(w)
    out = {}
    for k, learner in enumerate(learners):
        out[learner] = {
            "pg": float(pg_sum[k]),
            "kl": 0.0,
            "clip_frac": float(clipped_count[k] / tokens[k]),
            "ratio_dev_first": float(ratio_dev[k]),
            "grad_norm": float(grad_norm[k]),
            "turns": float(len(rows_of[k])),
            "tokens": float(tokens[k]),
            "gap_max": float(gap_max[k]),
            "gap_mean": float(gap_sum[k] / tokens[k]),
            "gap_sum": float(gap_sum[k]),
            "adv_var": float(adv_var[k]),
        }
    return out


def make_learners(team, trained_agents: list[int], train_cfg) -> list[PolicyLearner]:
    """The learners of a team's trained agents: one per LLM adapter (agents that share an
    adapter share its learner), one per tabular member. Frozen and scripted members have none."""
    learners = []
    if isinstance(team, ModelTeam) and team.models:  # an LLM team, or a mixed team with LLM members
        adapters: dict[tuple[int, str], list[int]] = {}  # (model, adapter) -> the trained agents that play it
        for agent in trained_agents:
            if team.plays_adapter(agent):  # a mixed team's LLM members only
                adapters.setdefault((team.model_index[agent], team.adapters[agent]), []).append(agent)
        learners += [LLMLearner(team, m, adapter, agents, train_cfg) for (m, adapter), agents in adapters.items()]
    for agent in trained_agents:
        policy = team.tabular.get(agent) if isinstance(team, MixedTeam) else None
        if policy is not None:
            learners.append(TabularLearner(policy, agent, train_cfg))
    return learners
