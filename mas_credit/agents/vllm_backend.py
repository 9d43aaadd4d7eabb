"""vLLM backend (the optional `vllm` extra, GPU): the same `act(requests)` interface as
`LLMTeam`, one LoRA adapter per agent served through vLLM's multi-LoRA support.

An agent with a saved adapter (`team.adapters`) is served with a `LoRARequest`; an agent
without one plays the base model (a fresh LoRA adapter starts as the identity, so this
is the same policy). Log-probabilities are vLLM's processed log-probabilities of the
sampled tokens (temperature applied), the same quantity the transformers backend
records. This module imports vllm only when a team is built.
"""

from __future__ import annotations

from mas_credit.agents.hf import DEFAULT_MODEL, default_model_path
from mas_credit.agents.llm import LLMTeam, build_topology, check_llm_team, request_seed
from mas_credit.agents.protocol import ActRequest, ActResult
from mas_credit.games.base import normalise_text


class VLLMTeam:
    kind = "vllm"

    def __init__(self, cfg, n_agents: int, sequential: bool = False):
        try:
            from vllm import LLM
        except ImportError:
            raise ValueError("team.kind vllm needs the vllm extra and a CUDA GPU: pip install -e .[vllm]") from None

        check_llm_team(cfg, n_agents, sequential)
        self.cfg, self._n_agents, self.seed = cfg, n_agents, int(cfg.seed)
        self.topology = build_topology(cfg.topology, n_agents)
        path = str(default_model_path()[0]) if cfg.model == DEFAULT_MODEL else cfg.model
        kwargs = dict(
            model=path,
            enable_lora=bool(cfg.adapters),
            max_lora_rank=max(8, cfg.lora_r),
            max_loras=max(1, n_agents),
            seed=self.seed,
            gpu_memory_utilization=0.5,
        )
        try:
            self.llm = LLM(**kwargs, logprobs_mode="processed_logprobs")
        except TypeError:  # older vLLM: raw log-probabilities (equal to processed ones at temperature 1)
            self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.calls = self.tokens = 0

    @property
    def n_agents(self) -> int:
        return self._n_agents

    chat = LLMTeam.chat
    answer_prefix = LLMTeam.answer_prefix

    def _lora(self, agent: int):
        from vllm.lora.request import LoRARequest

        path = {int(k): v for k, v in self.cfg.adapters.items()}.get(agent)
        return LoRARequest(f"agent_{agent}", agent + 1, path) if path else None

    def act(self, requests: list[ActRequest]) -> list[ActResult]:
        from vllm import SamplingParams

        if not requests:
            return []
        base = request_seed(self.seed, requests)
        prefixes = [self.answer_prefix(r.env.name) for r in requests]
        prompts = [
            self.tokenizer.apply_chat_template(self.chat(r), add_generation_prompt=True, tokenize=False) + prefix
            for r, prefix in zip(requests, prefixes)
        ]
        params = [
            SamplingParams(
                temperature=self.cfg.temperature,
                top_p=self.cfg.top_p,
                max_tokens=self.cfg.max_new_tokens,
                logprobs=0,
                seed=base + k,
            )
            for k in range(len(requests))
        ]
        outputs = self.llm.generate(
            prompts, params, lora_request=[self._lora(r.agent) for r in requests], use_tqdm=False
        )
        results = []
        for out, prefix in zip(outputs, prefixes):
            gen = out.outputs[0]
            ids = list(gen.token_ids)
            logprobs = [step[token].logprob for step, token in zip(gen.logprobs or [], ids)]
            text = f"{prefix} {gen.text.strip()}" if prefix else gen.text.strip()
            results.append(
                ActResult(
                    text=normalise_text(text),
                    prompt_ids=list(out.prompt_token_ids),
                    response_ids=ids,
                    logprobs=logprobs,
                )
            )
            self.tokens += len(ids)
        self.calls += len(requests)
        return results
