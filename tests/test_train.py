"""The trainer: updates move every trained agent's adapter and no frozen one, for each
estimator; a killed run resumes to the same parameters and metrics; config mistakes fail
before any model loads; the loss against a plain recomputation."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from mas_credit.agents import ActResult, ScriptedTeam
from mas_credit.agents.hf import sequence_logprobs
from mas_credit.config import ConfigError, load_experiment, validate_train
from mas_credit.train.learners import LLMLearner, adapter_output_layers, reference_rows, rows_without_adapter
from mas_credit.train.loss import _left_padded, policy_loss, response_logprobs, right_padded
from mas_credit.train.trainer import Trainer, resume

from .devices import DEVICES
from .test_studies import ROOT

QUICK = ROOT / "experiments" / "train_trio.yaml"
TINY = [
    "team=tiny_trio",
    "n_tasks=2",
    "group_size=4",
    "train.iterations=2",
    "train.eval_every=1",
    "train.eval_tasks=2",
    "train.checkpoint_every=1",
    "train.lr=0.01",
    "train.tensorboard=false",
]


class ScriptedTextLLMTeam:
    """The tiny LLM team with its texts chosen by scripted agents of skill 0.5, so rewards
    vary and advantages are not all zero; token ids and behaviour log-probs are the tiny
    model's own (teacher-forced), so the update path is the real one."""

    def __init__(self, llm):
        self.llm = llm
        self.scripted = ScriptedTeam([0.5] * llm.n_agents, seed=1)

    def __getattr__(self, name):
        return getattr(self.llm, name)

    def act(self, requests):
        out = []
        tok = self.llm.tokenizer
        for req, res in zip(requests, self.scripted.act(requests)):
            prompt = tok.apply_chat_template(self.llm.chat(req), add_generation_prompt=True, tokenize=False)
            prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            response_ids = tok(res.text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            model = self.llm.model_for(req.agent)
            model.set_adapter(self.llm.adapters[req.agent])
            logprobs = sequence_logprobs(model, prompt_ids, response_ids, self.llm.cfg.temperature)
            out.append(ActResult(text=res.text, prompt_ids=prompt_ids, response_ids=response_ids, logprobs=logprobs))
            self.llm.tokens += len(response_ids)
        return out


def trainer_for(overrides, run_dir):
    cfg = load_experiment(QUICK, TINY + overrides)
    validate_train(cfg)
    trainer = Trainer(cfg, run_dir, progress=False)
    trainer.team = ScriptedTextLLMTeam(trainer.team)
    return trainer


@pytest.mark.parametrize("estimator", ["grpo", "dr_mas", "sharp", "c3", "m_grpo", "llm_mca"])
def test_two_updates_move_trained_adapters_and_leave_frozen_ones(estimator, tmp_path):
    trainer = trainer_for([f"estimators=[{estimator}]", "train.trained_agents=[0,2]"], tmp_path / estimator)
    before = trainer.adapter_state()
    trainer.run()
    after = trainer.adapter_state()
    for key in before:
        moved = any(not torch.equal(before[key][n], after[key][n]) for n in before[key] if "lora_B" in n)
        if key.endswith("agent_1"):
            assert all(torch.equal(before[key][n], after[key][n]) for n in before[key]), (
                f"{estimator}: frozen agent_1 moved"
            )
        else:
            assert moved, f"{estimator}: trained {key} did not move"
    records = [json.loads(line) for line in (tmp_path / estimator / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 2 and [r["kind"] for r in records].count("eval") == 3
    assert "loss/agent_1/pg" not in train[0] and train[0]["loss/agent_0/turns"] > 0
    assert all(np.isfinite(r[k]) for r in train for k in r if isinstance(r[k], float))
    assert (tmp_path / estimator / "summary.md").is_file() and (tmp_path / estimator / "curves.png").is_file()
    assert any((tmp_path / estimator / "tensorboard").glob("*")) is False  # tensorboard: false writes no events
    items = json.loads((tmp_path / estimator / "checklist.json").read_text())
    assert items["kind"] == "train" and items["model"]["name"] == "tiny random model (tests only)"
    assert items["model"]["parameters"] > 0 and items["model"]["adapter_parameters"] > 0
    assert items["baseline"]["episode_level_grpo_same_model"] is (estimator == "grpo")
    assert list(items["overhead"]) == [estimator] and 0 <= items["overhead"][estimator]["share_of_run_time"] < 1
    assert items["overhead"][estimator]["coalition_evals"] == sum(r.get("cf/evals", 0.0) for r in train)
    turns = items["trajectories"]["turns"]
    assert turns["episodes"] == 2 * 2 * 4 and turns["min"] == turns["max"] == 3  # one-shot vault: 3 turns
    assert items["trajectories"]["response_tokens"]["min"] > 0
    assert "## Reporting checklist" in (tmp_path / estimator / "summary.md").read_text()


def run_until_killed(trainer, iteration: int, monkeypatch) -> None:
    """Run `trainer` until it is killed (KeyboardInterrupt) as iteration `iteration` starts."""
    real_step = Trainer.step

    def dies(self, i):
        if i == iteration:
            raise KeyboardInterrupt
        return real_step(self, i)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "step", dies)
        with pytest.raises(KeyboardInterrupt):
            trainer.run()


def untimed_metrics(run_dir) -> list[dict]:
    """A run's metric records without their timings (which differ run to run)."""
    return [
        {k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.reliability(
    "a training run killed mid-way",
    "`--resume` continues from the last checkpoint to the same result as an uninterrupted run",
)
def test_a_killed_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    overrides = ["estimators=[grpo]", "train.iterations=4", "train.checkpoint_every=2", "train.eval_every=2"]
    whole = trainer_for(overrides, tmp_path / "whole")
    whole.run()

    run_until_killed(trainer_for(overrides, tmp_path / "killed"), 3, monkeypatch)
    import mas_credit.train.trainer as trainer_module

    real_trainer = trainer_module.Trainer

    class Resumed(real_trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.team = ScriptedTextLLMTeam(self.team)

    monkeypatch.setattr(trainer_module, "Trainer", Resumed)
    resume(tmp_path / "killed", progress=False)

    assert untimed_metrics(tmp_path / "killed") == untimed_metrics(tmp_path / "whole")
    from mas_credit.cli import main

    (tmp_path / "whole" / "summary.md").unlink()
    assert (
        main(["report", str(tmp_path / "whole")]) == 0
        and "| iteration | eval/success" in (tmp_path / "whole" / "summary.md").read_text()
    )
    a = torch.load(tmp_path / "whole" / "checkpoint" / "state.pt", weights_only=False)
    b = torch.load(tmp_path / "killed" / "checkpoint" / "state.pt", weights_only=False)
    assert a["iteration"] == b["iteration"] == 4
    assert a["learners"].keys() == b["learners"].keys() and len(a["learners"]) == 3
    for key in a["learners"]:
        params_a, params_b = a["learners"][key]["params"], b["learners"][key]["params"]
        assert len(params_a) == len(params_b) > 0
        assert all(torch.equal(x, y) for x, y in zip(params_a, params_b)), key


BAD = [
    (["estimators=[sharpp]"], "unknown option 'sharpp'"),
    (["group_size=1", "estimators=[grpo]"], "normalises advantages within task groups, but group_size is 1"),
    (["train.trained_agents=[0,5]"], "train.trained_agents [5] are not agents of the team"),
    (["train.trained_agents=[0,2,0]"], "train.trained_agents lists agents [0] more than once; list each agent once"),
    (["train.lrr=0.1"], "unknown key 'train.lrr'; valid keys: iterations, lr, clip_eps"),
    (["estimators=[grpo,sharp]"], "train uses one estimator but 2 are listed"),
    (
        ["team=scripted_trio"],
        "train needs a team that learns (team.kind llm, or mixed with a tabular member), got scripted",
    ),
    (["train.share_prompts=sometimes"], "train.share_prompts 'sometimes' is not valid; valid choices: auto, on, off"),
    (["train.fuse_reference=always"], "train.fuse_reference 'always' is not valid; valid choices: auto, on, off"),
    (
        ["train.fuse_reference=on", "train.share_prompts=on"],
        "train.fuse_reference: on runs each micro-batch twice in one pass, which needs one-pass rows; set "
        "train.share_prompts to auto or off",
    ),
    (["train.tis_cap=0.5"], "train.tis_cap must be 0 (off) or >= 1"),
    (["team.dtype=float8"], "team.dtype 'float8' is not valid; valid choices: auto, float32, bfloat16, float16"),
]


@pytest.mark.parametrize("overrides,message", BAD)
def test_config_mistakes_fail_before_any_model_loads(overrides, message, tmp_path, monkeypatch, run_main):
    import mas_credit.agents.hf as hf
    import mas_credit.agents.llm as llm

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was checked")

    for module in (hf, llm):
        monkeypatch.setattr(module, "load_model", no_model)
    monkeypatch.setenv("MAS_CREDIT_CACHE", str(tmp_path / "no-cache"))
    code, _, err = run_main("train", QUICK, *overrides, "--out", tmp_path / "x")
    assert code == 2, err
    assert message in err and err.startswith("mas-credit: error: ") and err.count("\n") == 1
    assert not (tmp_path / "no-cache").exists() and not (tmp_path / "x").exists()


def test_resume_needs_a_checkpoint(tmp_path, run_main):
    code, _, err = run_main("train", "--resume", tmp_path)
    assert code == 2 and "has no checkpoint/state.pt" in err


@pytest.mark.parametrize("tis_cap", [0.0, 1.5])
def test_policy_loss_equals_a_plain_loop(tis_cap):
    g = torch.Generator().manual_seed(0)
    logp, old, ref, sampler = (torch.randn(3, 5, generator=g, dtype=torch.float64) * 0.3 - 2 for _ in range(4))
    adv = torch.randn(3, 1, generator=g, dtype=torch.float64).expand(3, 5)
    weight = torch.tensor([[1, 1, 1, 0, 0], [2, 2, 2, 2, 2], [1, 0, 0, 0, 0]], dtype=torch.float64)
    tis = torch.exp(old - sampler).clamp(max=tis_cap) if tis_cap else None
    loss, stats = policy_loss(logp, old, ref, adv, weight, 0.2, 0.1, float(weight.sum()), tis)
    total, clipped, dev = 0.0, 0, 0.0
    for m in range(3):
        for t in range(5):
            r = math.exp(float(logp[m, t] - old[m, t]))
            a = float(adv[m, t])
            pg = -min(r * a, min(max(r, 0.8), 1.2) * a)
            if tis_cap:
                pg *= min(math.exp(float(old[m, t] - sampler[m, t])), tis_cap)
            d = float(ref[m, t] - logp[m, t])
            total += float(weight[m, t]) * (pg + 0.1 * (math.exp(d) - d - 1))
            if weight[m, t] > 0:
                clipped += not 0.8 <= r <= 1.2
                dev = max(dev, abs(r - 1))
    assert float(loss) == pytest.approx(total / float(weight.sum()), rel=1e-12)
    assert int(stats["clipped"]) == clipped > 0 and float(stats["ratio_dev"]) == pytest.approx(dev, rel=1e-12)


def spy_policy_loss(monkeypatch):
    """Record every policy_loss call the trainer makes (its inputs, on the CPU)."""
    import mas_credit.train.learners as learners_module

    calls = []

    def spy(logp, old, ref, adv, weight, *args):
        calls.append(
            {
                "logp": logp.detach().cpu(),
                "old": old.cpu(),
                "ref": ref.detach().cpu(),
                "weight": weight.cpu(),
                "tis": None if args[-1] is None else args[-1].cpu(),
            }
        )
        return policy_loss(logp, old, ref, adv, weight, *args)

    monkeypatch.setattr(learners_module, "policy_loss", spy)
    return calls


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("fuse", ["auto", "on"])
def test_first_epoch_ratio_is_exactly_one_before_any_parameter_moves(device, dtype, fuse, tmp_path, monkeypatch):
    """The real sampler (the team's own batched generate) in the given dtype. The sampler's
    log-probs differ from the trainer's forward by the rollout's numerics (in bfloat16 by far
    more than in float32); the trainer's old log-probs are its own, so the first epoch's ratio
    is exactly 1 and nothing is clipped, whatever the gap; with the reference fused into that
    forward (train.fuse_reference: on; auto does it on a GPU) as well."""
    cfg = load_experiment(
        QUICK,
        TINY
        + [
            "estimators=[grpo]",
            f"team.device={device}",
            f"team.dtype={dtype}",
            f"train.fuse_reference={fuse}",
            "train.clip_eps=0.01",
            "train.epochs=2",
            "train.token_budget=256",
        ],
    )
    trainer = Trainer(cfg, tmp_path, progress=False)
    with torch.no_grad():  # adapters away from the base: the KL term has a gradient
        for name, p in trainer.team.models[0].named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    calls, per_update = spy_policy_loss(monkeypatch), []

    def recorded(update):
        def wrapper(rows):
            start = len(calls)
            out = update(rows)
            per_update.append(calls[start:])
            return out

        return wrapper

    for learner in trainer.learners:
        monkeypatch.setattr(learner, "update", recorded(learner.update))
    record = trainer.step(0)
    assert len(per_update) == 3 and all(len(c) >= 4 for c in per_update)  # 2 epochs x several micro-batches each
    for agent_calls in per_update:
        first, second = agent_calls[: len(agent_calls) // 2], agent_calls[len(agent_calls) // 2 :]
        for call in first:
            assert torch.equal(call["logp"], call["old"])  # old = this forward: ratio exactly 1
        # the second epoch keeps the first epoch's old log-probs although the parameters have moved since
        assert all(torch.equal(a["old"], b["old"]) for a, b in zip(first, second))
        assert any(not torch.equal(b["logp"], b["old"]) for b in second)
    for agent in range(3):
        assert record[f"loss/agent_{agent}/ratio_dev_first"] == 0.0 and record[f"loss/agent_{agent}/tokens"] > 0
    gap_max, gap_mean = record["train/logprob_gap_max"], record["train/logprob_gap_mean"]
    assert 0 <= gap_mean <= gap_max and math.isfinite(gap_max)
    if dtype == "float32":
        assert gap_max < 1e-3  # sampler and trainer agree up to float32 rounding
    else:
        assert gap_max > 1e-3  # bfloat16 sampling: a real gap, and the ratio is still 1


def test_old_logprobs_equal_a_forward_pass_per_turn_and_tis_weights_the_gap(tmp_path, monkeypatch):
    trainer = trainer_for(
        ["estimators=[grpo]", "train.tis_cap=1.5", "train.trained_agents=[1]", "team.device=cpu"], tmp_path
    )
    _, episodes = trainer.collect(0)
    model = trainer.team.models[0]
    model.set_adapter("agent_1")
    turns = sorted(
        (t for ep in episodes for t in ep.turns if t.agent == 1), key=lambda t: (len(t.prompt_ids), t.prompt_ids)
    )
    expected = [sequence_logprobs(model, t.prompt_ids, t.response_ids, trainer.team.cfg.temperature) for t in turns]
    calls = spy_policy_loss(monkeypatch)
    monkeypatch.setattr(trainer, "collect", lambda iteration: (trainer.games[0], episodes))
    record = trainer.step(0)
    old = [row[: int(w.gt(0).sum())] for call in calls for row, w in zip(call["old"], call["weight"])]
    assert len(old) == len(turns)
    tis = [row for call in calls for row in call["tis"]]
    gaps = []
    for k, turn in enumerate(turns):
        np.testing.assert_allclose(old[k].numpy(), expected[k], atol=1e-5)
        n = len(turn.response_ids)
        np.testing.assert_allclose(
            tis[k][:n].numpy(), np.minimum(np.exp(old[k].numpy() - np.array(turn.logprobs)), 1.5), rtol=1e-6
        )
        gaps += list(np.abs(old[k].numpy() - np.array(turn.logprobs)))
    assert record["train/logprob_gap_max"] == pytest.approx(max(gaps), abs=1e-7)
    assert record["train/logprob_gap_mean"] == pytest.approx(np.mean(gaps), abs=1e-7)


def test_padded_response_logprobs_equal_one_sequence_at_a_time():
    from mas_credit.agents.hf import load_model

    model = load_model("tiny", "cpu").model
    rows = [([1, 5, 9, 13], [20, 21, 2]), ([1, 7], [30, 2]), ([1, 4, 4, 4, 4, 4], [8])]
    logp, mask = response_logprobs(model, rows, temperature=0.7)
    for m, (prompt, response) in enumerate(rows):
        ref = sequence_logprobs(model, prompt, response, 0.7)
        np.testing.assert_allclose(logp[m, : len(response)].detach().numpy(), ref, atol=1e-5)
        assert mask[m].sum() == len(response)


def test_shared_prompt_logprobs_and_gradients_equal_one_pass():
    from mas_credit.agents.hf import load_model

    model = load_model("tiny", "cpu").model
    a, b = [1, 5, 9, 13, 17], [1, 7]
    rows = [(a, [20, 21, 2]), (b, [30, 2]), (a, [8]), (a, [22, 23, 24, 25]), (b, [31, 32, 33]), ([1, 4, 4], [6, 2])]
    results = []
    for share in (True, False):
        model.zero_grad(set_to_none=True)
        logp, mask = response_logprobs(model, rows, temperature=0.7, share_prompts=share)
        (logp * torch.linspace(0.5, 1.5, logp.numel()).reshape(logp.shape)).sum().backward()
        results.append(
            (logp.detach(), mask, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        )
    (shared, shared_mask, shared_grad), (plain, plain_mask, plain_grad) = results
    assert torch.equal(shared_mask, plain_mask)
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)
    for m, (prompt, response) in enumerate(rows):
        np.testing.assert_allclose(
            shared[m, : len(response)].numpy(), sequence_logprobs(model, prompt, response, 0.7), atol=1e-5
        )
    assert shared_grad.keys() == plain_grad.keys() and len(shared_grad) > 0
    for name in plain_grad:
        torch.testing.assert_close(shared_grad[name], plain_grad[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_reference_logprobs_are_the_base_model_without_any_adapter(tmp_path, device):
    trainer = trainer_for(
        [
            "estimators=[grpo]",
            "train.iterations=1",
            f"team.device={device}",
            "team.dtype=float32",
            "train.fuse_reference=off",  # the separate pass (auto fuses on a GPU)
        ],
        tmp_path / "ref",
    )
    trainer.run()  # adapters have moved away from the base model
    _, episodes = trainer.collect(1)
    learner_rows = {
        learner: [
            {"prompt": t.prompt_ids, "response": t.response_ids}
            for ep in episodes
            for t in ep.turns
            if t.agent in learner.agents
        ][:3]
        for learner in trainer.learners
    }
    assert len(learner_rows) == 3 and all(type(learner) is LLMLearner for learner in learner_rows)
    LLMLearner.prepare_group(learner_rows)
    model = trainer.team.models[0]
    for learner, rows in learner_rows.items():
        for row in rows:
            with model.disable_adapter():
                base = sequence_logprobs(model, row["prompt"], row["response"], trainer.team.cfg.temperature)
            model.set_adapter(learner.adapter)
            adapted = sequence_logprobs(model, row["prompt"], row["response"], trainer.team.cfg.temperature)
            ref = reference_rows([row])[0].cpu().numpy()
            np.testing.assert_allclose(ref, base, atol=1e-5)
            assert not np.allclose(ref, adapted, atol=1e-5), "the reference must not include the trained adapter"


def perturbed_adapters(trainer) -> None:
    """Every adapter away from the base model (LoRA B starts at 0), the same way in every trainer."""
    with torch.no_grad():
        for name, p in trainer.team.models[0].named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.05)


@pytest.mark.parametrize("device", DEVICES)
def test_a_fused_reference_gives_the_separate_pass_update(device, tmp_path, monkeypatch):
    """train.fuse_reference: on (the reference log-probs from each micro-batch's copy in the first
    epoch's forward, with the adapter's output zeroed) against off (one separate pass with the
    adapters disabled), on the same episodes: the same reference log-probs, losses, KL, and
    parameters after two epochs; and the fused run never disables an adapter."""
    runs = {}
    episodes = None
    for fuse in ("off", "on"):
        trainer = trainer_for(
            [
                "estimators=[grpo]",
                f"team.device={device}",
                "team.dtype=float32",
                f"train.fuse_reference={fuse}",
                "train.epochs=2",
                "train.token_budget=256",
            ],
            tmp_path / fuse,
        )
        perturbed_adapters(trainer)
        assert [learner.fuse_reference for learner in trainer.learners] == [fuse == "on"] * 3
        if episodes is None:
            _, episodes = trainer.collect(0)
        monkeypatch.setattr(trainer, "collect", lambda iteration, t=trainer: (t.games[0], episodes))
        model, disabled = trainer.team.models[0], []
        monkeypatch.setattr(model, "disable_adapter", lambda real=model.disable_adapter: disabled.append(1) or real())
        calls = spy_policy_loss(monkeypatch)
        record = trainer.step(0)
        params = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if "lora_" in n}
        runs[fuse] = record, calls, params, len(disabled)
    (off, off_calls, off_params, off_disabled), (on, on_calls, on_params, on_disabled) = runs["off"], runs["on"]
    assert off_disabled == 1 and on_disabled == 0  # one separate pass for the three adapters; none when fused
    assert len(on_calls) == len(off_calls) >= 6
    for a, b in zip(off_calls, on_calls):
        assert torch.equal(a["weight"], b["weight"])
        torch.testing.assert_close(b["ref"], a["ref"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b["logp"], a["logp"], atol=1e-5, rtol=1e-5)
    keys = [k for k in off if k.startswith(("loss/", "train/logprob_gap"))]
    assert any(k.endswith("/kl") and off[k] > 1e-4 for k in keys)  # the adapters are away from the base
    for k in keys:
        # a log-prob gap is a difference of the log-probs compared above, so it carries their 1e-5 tolerance (the H200
        # machine's CPU gave 1.9e-6 against 0.0: sampler and trainer agree there to rounding)
        assert on[k] == pytest.approx(off[k], rel=1e-4, abs=1e-5 if "gap" in k else 1e-6), k
    assert off_params.keys() == on_params.keys()
    # AdamW's steps are about lr = 0.01 each whatever the gradient's size, so rounding in a near-zero gradient moves a
    # parameter by a visible fraction of a step; a wrong reference or gradient would move it by whole steps
    for name in off_params:
        torch.testing.assert_close(on_params[name], off_params[name], atol=2e-4, rtol=0)


def test_the_fused_reference_is_the_base_model_turn_by_turn(tmp_path, monkeypatch):
    """The slow, obvious reference: each turn's reference log-probs from the fused forward equal
    a forward of that turn alone with the adapters disabled, and differ from the adapter's."""
    trainer = trainer_for(
        ["estimators=[grpo]", "train.trained_agents=[1]", "team.device=cpu", "train.fuse_reference=on"], tmp_path
    )
    perturbed_adapters(trainer)
    _, episodes = trainer.collect(0)
    model, temperature = trainer.team.models[0], trainer.team.cfg.temperature
    turns = sorted(
        (t for ep in episodes for t in ep.turns if t.agent == 1), key=lambda t: (len(t.prompt_ids), t.prompt_ids)
    )
    with model.disable_adapter():
        base = [sequence_logprobs(model, t.prompt_ids, t.response_ids, temperature) for t in turns]
    model.set_adapter("agent_1")
    adapted = [sequence_logprobs(model, t.prompt_ids, t.response_ids, temperature) for t in turns]
    calls = spy_policy_loss(monkeypatch)
    monkeypatch.setattr(trainer, "collect", lambda iteration: (trainer.games[0], episodes))
    trainer.step(0)
    refs = [row[: int(w.gt(0).sum())] for call in calls for row, w in zip(call["ref"], call["weight"])]
    assert len(refs) == len(turns) > 0
    for ref, expected, policy in zip(refs, base, adapted):
        np.testing.assert_allclose(ref.numpy(), expected, atol=1e-5)
        assert not np.allclose(ref.numpy(), policy, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "fuse,share,kl,expected",
    [
        ("auto", "auto", 0.02, {"cpu": (False, True), "cuda": (True, False)}),
        ("on", "auto", 0.02, {"cpu": (True, False), "cuda": (True, False)}),
        ("off", "auto", 0.02, {"cpu": (False, True), "cuda": (False, False)}),
        ("auto", "on", 0.02, {"cpu": (False, True), "cuda": (False, True)}),
        ("on", "auto", 0.0, {"cpu": (False, True), "cuda": (False, False)}),  # no KL term: no reference at all
    ],
)
def test_auto_fuses_the_reference_on_a_gpu_and_shares_prompts_on_a_cpu(device, fuse, share, kl, expected, tmp_path):
    """(fuse_reference, share_prompts) as each learner resolves them, per device."""
    overrides = [f"team.device={device}", f"train.fuse_reference={fuse}", f"train.share_prompts={share}"]
    trainer = trainer_for(["estimators=[grpo]", f"train.kl_coef={kl}", *overrides], tmp_path)
    assert {(learner.fuse_reference, learner.share_prompts) for learner in trainer.learners} == {expected[device]}


@pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`")  # the embedding adapter, on purpose
def test_fusing_needs_plain_lora_on_linear_layers(tmp_path):
    """A DoRA adapter's output is not its lora_B's alone: no layers to zero, so `on` is an error
    that names the field and `auto` falls back to the separate pass."""
    from peft import LoraConfig

    trainer = trainer_for(["estimators=[grpo]", "team.device=cpu"], tmp_path)
    model = trainer.team.models[0]
    assert len(adapter_output_layers(model, "agent_0")) == 2 * model.config.num_hidden_layers  # q and v
    model.add_adapter("dora", LoraConfig(r=2, target_modules=["q_proj"], use_dora=True))
    model.add_adapter("embed", LoraConfig(r=2, target_modules=["embed_tokens"]))
    assert adapter_output_layers(model, "dora") is None and adapter_output_layers(model, "embed") is None
    assert adapter_output_layers(model, "no_such_adapter") is None
    cfg = trainer.cfg.train
    for fuse, expected in (("on", None), ("auto", False)):
        t = dataclasses.replace(cfg, fuse_reference=fuse)
        if expected is None:
            with pytest.raises(ConfigError, match="train.fuse_reference: on needs plain LoRA adapters"):
                LLMLearner(trainer.team.llm, 0, "dora", [0], t)
        else:
            assert LLMLearner(trainer.team.llm, 0, "dora", [0], t).fuse_reference is expected


@pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`")  # the embedding adapter, on purpose
def test_fusing_an_embedding_adapter_on_is_a_one_line_error_with_exit_code_2(tmp_path, run_main):
    code, _, err = run_main(
        "train",
        QUICK,
        *TINY,
        "team.lora_targets=[q_proj,embed_tokens]",
        "train.fuse_reference=on",
        "--out",
        tmp_path / "x",
    )
    assert code == 2 and err.startswith("mas-credit: error: ") and err.count("\n") == 1, err
    assert "train.fuse_reference: on needs plain LoRA adapters on linear layers" in err


def test_rows_without_adapter_zeroes_chosen_rows_and_always_removes_its_hooks():
    layer = torch.nn.Linear(3, 2)
    x = torch.randn(4, 5, 3)
    keep = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(-1, 1, 1)
    with rows_without_adapter([layer], keep):
        out = layer(x)
        with pytest.raises(RuntimeError, match="is not \\[4, T, F\\]"):
            layer(x[:2])  # a batch of another size is refused, not broadcast
    expected = layer(x)
    assert torch.equal(out[0::2], expected[0::2]) and not out[1::2].any()
    with pytest.raises(KeyError):
        with rows_without_adapter([layer], keep):
            raise KeyError("inside")
    assert not layer._forward_hooks and torch.equal(layer(x), expected)


def test_padding_helpers_equal_a_plain_loop():
    rng = np.random.default_rng(3)
    rows = [rng.integers(1, 50, size=n).tolist() for n in (3, 1, 7, 7, 2)]
    width = max(map(len, rows))
    right = torch.zeros(len(rows), width, dtype=torch.long)
    ids, attention = torch.zeros_like(right), torch.zeros_like(right)
    for m, row in enumerate(rows):
        for j, token in enumerate(row):
            right[m, j] = token
            ids[m, width - len(row) + j] = token
            attention[m, width - len(row) + j] = 1
    assert torch.equal(right_padded(rows, torch.long), right)
    assert right_padded([[0.5], [0.25, -1.0]], torch.float32, value=9).tolist() == [[0.5, 9.0], [0.25, -1.0]]
    got_ids, got_attention = _left_padded(rows, torch.device("cpu"))
    assert torch.equal(got_ids, ids) and torch.equal(got_attention, attention)


@pytest.mark.parametrize("device", DEVICES)
def test_reference_rows_gather_equals_padding_row_by_row(device):
    """The one-index_select gather from prepare_group's table against a plain loop, in any row
    order, and rows with a hand-given "ref" (the row-by-row path) mixed in."""
    lengths = [5, 2, 4, 1, 3, 5]
    table = torch.randn(6, 5, device=device)  # zero past each row's response, as response_logprobs pads
    table *= torch.arange(5, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
    rows = [{"response": [1] * n, "ref_slot": (table, m)} for m, n in enumerate(lengths)]
    by_hand = {"response": [1, 1, 1], "ref": torch.tensor([0.5, -0.25, 2.0], device=device)}

    def loop(chosen):
        out = torch.zeros(len(chosen), max(len(r["response"]) for r in chosen))
        for k, r in enumerate(chosen):
            for j in range(len(r["response"])):
                out[k, j] = r["ref"][j] if "ref" in r else r["ref_slot"][0][r["ref_slot"][1], j]
        return out

    for chosen in ([rows[4], rows[1], rows[3]], rows[::-1], [rows[1], by_hand, rows[0]], [by_hand]):
        got = reference_rows(chosen)
        assert got.dtype == torch.float32 and got.device.type == torch.device(device).type
        torch.testing.assert_close(got.cpu(), loop(chosen), rtol=0, atol=0)


@pytest.mark.parametrize(
    "name,kind", [("quickstart.yaml", "mixed"), ("train_trio.yaml", "llm"), ("compare_lazy.yaml", "llm")]
)
def test_training_experiments_pass_the_training_rules(name, kind):
    cfg = load_experiment(ROOT / "experiments" / name)
    validate_train(cfg, name)
    assert cfg.team.kind == kind and cfg.team.model == "smollm2"


@pytest.mark.parametrize("sharing", ["shared", "separate"])
@pytest.mark.parametrize("fuse", ["auto", "on"])
def test_other_sharing_modes_train(sharing, fuse, tmp_path):
    trainer = trainer_for(
        [
            "estimators=[grpo]",
            f"team.sharing={sharing}",
            "train.iterations=1",
            "train.trained_agents=[0]",
            f"train.fuse_reference={fuse}",
        ],
        tmp_path / sharing,
    )
    assert len(trainer.learners) == 1
    assert trainer.learners[0].fuse_reference == (fuse == "on" or trainer.team.device.type == "cuda")
    before = trainer.adapter_state()
    trainer.run()
    after = trainer.adapter_state()
    moved = {key for key in before if any(not torch.equal(before[key][n], after[key][n]) for n in before[key])}
    # shared: the one adapter every agent plays moves; separate: only agent_0's model moves
    assert moved == ({"0/shared"} if sharing == "shared" else {"0/agent_0"})


@pytest.mark.cuda
@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA is not available on this machine; training on a GPU needs one"
)
def test_the_same_config_trains_on_cuda(tmp_path):
    trainer = trainer_for(["estimators=[sharp]", "estimators.0.device=cuda", "team.device=cuda"], tmp_path / "cuda")
    assert trainer.team.device.type == "cuda"
    before = trainer.adapter_state()
    trainer.run()
    after = trainer.adapter_state()
    assert all(any(not torch.equal(before[k][n], after[k][n]) for n in before[k] if "lora_B" in n) for k in before)
    items = json.loads((tmp_path / "cuda" / "checklist.json").read_text())
    assert "cuda" in items["compute"]["device"]["types"] and items["compute"]["gpu_hours"] > 0


def test_training_curves_show_what_moves_with_labelled_axes_and_no_hidden_line():
    from mas_credit.train.summary import training_curves
    from mas_credit.train.trainer import progress_fields

    evals = [
        {
            "kind": "eval",
            "iteration": i,
            "eval/success": s,
            "eval/reward": s,
            "eval/correct/agent_0": c,
            "eval/correct/agent_1": c,
        }
        for i, s, c in [(0, 0.25, 0.5), (2, 0.5, 0.75)]
    ]
    train = [
        {
            "kind": "train",
            "iteration": i,
            "success": 0.0,
            "valid_turns": v,
            "credit/sharp/agent_0": 0.0,
            "credit/sharp/agent_1": 0.0,
        }
        for i, v in [(0, 0.3), (1, 0.6)]
    ]
    fig = training_curves(train, evals)
    (success, correct), (valid, credit) = fig.axes[0:2], fig.axes[2:4]
    for ax in fig.axes:
        assert ax.get_xlabel() == "iteration" and ax.get_ylabel()
    assert [line.get_label() for line in success.lines] == ["greedy, held-out tasks", "sampled (training episodes)"]
    assert [line.get_label() for line in correct.lines] == ["agent_0", "agent_1"]
    assert list(valid.lines[0].get_ydata()) == [0.3, 0.6]
    assert credit.get_ylabel() == "mean credit (sharp)"
    # equal curves (both agents' credit 0, both agents' correctness) are drawn in different styles
    for ax in (correct, credit):
        styles = {(line.get_linestyle(), line.get_marker(), line.get_markersize()) for line in ax.lines}
        assert len(styles) == len(ax.lines) == 2
    assert progress_fields(train[1], evals[1]) == {"success": "0.00", "valid": "0.60", "eval": "0.50"}
    assert progress_fields(train[1], {}) == {"success": "0.00", "valid": "0.60"}
