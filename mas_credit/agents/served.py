"""Served models: team members and the llm_mca critic answered by a model behind an
OpenAI-compatible server (`vllm serve`, SGLang, llama.cpp's server, `transformers serve`, a
hosted API), through the official `openai` client (`pip install -e .[serve]`).

    team: {kind: openai, params: {base_url: "http://127.0.0.1:8000/v1", model: my-model}}
    team: {kind: mixed, members: [{kind: tabular}, {kind: openai, base_url: ..., model: ...}, ...]}
    critic: {kind: openai, base_url: "http://127.0.0.1:8000/v1", model: my-model}

Requests go out concurrently (at most `max_concurrency` at once). A call that fails
(connection refused, timeout, HTTP 429 or 5xx, an answer that is not JSON) is retried
`max_retries` times with exponential backoff; one that still fails answers "" — the
agent's null action, or (for the critic) no shares, so llm_mca falls back to uniform
shares. Every call, retry, failure and token (from `usage`) is counted (`ServedClient.
counts`); a run never hangs on a server (each call has `timeout_s`) and never crashes on
one. A served member never learns: its turns carry no token ids, only the log-probs the
server returns (when it does). Critic answers are cached on disk (`AnswerCache`), keyed by
model, prompt and sampling settings, so a re-rendered or resumed study does not pay twice;
batch workers share the cache (SQLite, one writer at a time).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from mas_credit.agents.critic import parse_shares
from mas_credit.agents.protocol import ActRequest, ActResult, TeamKind
from mas_credit.games.base import normalise_text

DEFAULT_ROLE = "You are {agent}, one of {n_agents} agents cooperating in the game {game}. Answer briefly."


class ServedError(ValueError):
    """A served model cannot be used (unreachable at start, bad settings); one line with the URL and the fix."""


@dataclass(frozen=True)
class ServedSettings:
    """How to reach a served model and sample from it (a member's keys, `team.params`, or the critic's fields)."""

    base_url: str = ""
    """the server's OpenAI-compatible root, e.g. http://127.0.0.1:8000/v1"""
    model: str = ""
    """the model id the server knows (`mas-credit serve-check URL` lists them; a LoRA name on vLLM)"""
    api_key_env: str = ""
    """the name of the environment variable that holds the API key ("" = none: local servers); never the key"""
    max_concurrency: int = 4
    """requests in flight at once"""
    timeout_s: float = 60.0
    """seconds one request may take before it counts as failed (and is retried)"""
    max_retries: int = 3
    """retries of a failed request (connection, timeout, HTTP 429/5xx, malformed answer), with backoff"""
    backoff_s: float = 0.5
    """the first retry's wait; each further retry waits twice as long (at most 8 s)"""
    temperature: float = 0.0
    """sampling temperature (0 = greedy)"""
    max_new_tokens: int = 64
    """token cap of each answer"""
    seed: int = -1
    """the request's seed, where the server supports it (-1 = none sent)"""


def served_settings(options: dict, where: str = "") -> ServedSettings:
    """Settings from a mapping, with one-line errors that name the setting (after `where: `) and the fix."""
    where = f"{where}: " if where else ""
    valid = [f.name for f in fields(ServedSettings)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"{where}unknown option {', '.join(unknown)}; valid options: {', '.join(valid)}")
    values = {}
    for f in fields(ServedSettings):
        if f.name not in options:
            continue
        value, want = options[f.name], type(f.default)
        ok = isinstance(value, (int, float) if want is float else want) and not isinstance(value, bool)
        if not ok:
            raise ValueError(f"{where}{f.name} must be {want.__name__} (like {f.default!r}), got {value!r}")
        values[f.name] = want(value)
    settings = ServedSettings(**values)
    if not settings.base_url.startswith(("http://", "https://")):
        raise ValueError(
            f"{where}base_url must be the server's http(s) URL, e.g. http://127.0.0.1:8000/v1; "
            f"got {settings.base_url!r}"
        )
    if not settings.model:
        raise ValueError(
            f"{where}model is empty; name the served model (mas-credit serve-check {settings.base_url} lists them)"
        )
    if settings.api_key_env and settings.api_key_env not in os.environ:
        raise ValueError(
            f"{where}api_key_env names ${settings.api_key_env}, which is not set; export it "
            f"(the key itself never goes in a YAML)"
        )
    if (
        settings.max_concurrency < 1
        or settings.max_retries < 0
        or settings.timeout_s <= 0
        or settings.max_new_tokens < 1
    ):
        raise ValueError(f"{where}max_concurrency and max_new_tokens must be >= 1, max_retries >= 0, timeout_s > 0")
    return settings


@dataclass
class Answer:
    """One completion: its text ("" when the call failed) and the sampled tokens' log-probs (when returned)."""

    text: str
    logprobs: list[float] | None = None
    failed: bool = False


def _openai():
    try:
        import openai
    except ImportError:
        raise ServedError("served models need the openai client: pip install -e '.[serve]'") from None
    return openai


class ServedClient:
    """Concurrent chat completions with retries and counters (see the module docstring)."""

    def __init__(self, settings: ServedSettings):
        openai = _openai()
        self.settings = settings
        key = os.environ[settings.api_key_env] if settings.api_key_env else "EMPTY"
        self.client = openai.OpenAI(base_url=settings.base_url, api_key=key, timeout=settings.timeout_s, max_retries=0)
        # retried: no connection, a timeout, HTTP 429 or 5xx, or an answer that is not a chat completion
        self.retryable = (
            openai.APIConnectionError,
            openai.APITimeoutError,
            openai.RateLimitError,
            openai.InternalServerError,
            openai.APIResponseValidationError,
            ValueError,
            AttributeError,
            IndexError,
            TypeError,
        )
        self.refused = openai.APIStatusError  # another 4xx (bad request, unknown model): not retried
        self.counts = {"calls": 0, "retries": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._lock = threading.Lock()

    def models(self) -> list[str]:
        """The model ids the server lists; a one-line ServedError when it cannot be reached."""
        try:
            return [m.id for m in self.client.models.list().data]
        except Exception as err:  # noqa: BLE001 - any failure here means the server is not usable
            raise ServedError(
                f"cannot reach the served model at {self.settings.base_url} ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else 'no answer'}); start the server "
                f"(e.g. vllm serve MODEL) or fix base_url"
            ) from None

    def check_ready(self) -> None:
        """At start: the server answers and serves `model`."""
        served, model = self.models(), self.settings.model
        if model not in served and model.rpartition(":")[0] not in served:  # SGLang names an adapter base:lora
            raise ServedError(
                f"the server at {self.settings.base_url} does not serve '{self.settings.model}'; "
                f"it serves: {', '.join(served) or 'nothing'}"
            )

    def _count(self, **add) -> None:
        with self._lock:
            for key, value in add.items():
                self.counts[key] += value

    def _one(self, messages: list[dict], response_format: dict | None, logprobs: bool) -> Answer:
        s = self.settings
        kwargs = dict(model=s.model, messages=messages, temperature=s.temperature, max_tokens=s.max_new_tokens)
        if s.seed >= 0:
            kwargs["seed"] = s.seed
        if response_format is not None:
            kwargs["response_format"] = response_format
        if logprobs:
            kwargs["logprobs"] = True
        for attempt in range(s.max_retries + 1):
            self._count(calls=1)
            try:
                reply = self.client.chat.completions.create(**kwargs)
                choice = reply.choices[0]
                text = choice.message.content or ""
            except self.retryable:
                pass
            except self.refused:
                break
            else:
                usage = getattr(reply, "usage", None)
                self._count(
                    prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                    completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                )
                content = getattr(getattr(choice, "logprobs", None), "content", None)
                return Answer(text, [float(t.logprob) for t in content] if content else None)
            if attempt < s.max_retries:
                self._count(retries=1)
                time.sleep(min(s.backoff_s * 2**attempt, 8.0))
        self._count(failures=1)
        return Answer("", None, failed=True)

    def complete(
        self, chats: list[list[dict]], response_formats: list | None = None, logprobs: bool = False
    ) -> list[Answer]:
        """One answer per chat, in order; at most `max_concurrency` requests in flight."""
        formats = response_formats or [None] * len(chats)
        if not chats:
            return []
        with ThreadPoolExecutor(max_workers=min(self.settings.max_concurrency, len(chats))) as pool:
            return list(pool.map(lambda pair: self._one(pair[0], pair[1], logprobs), zip(chats, formats)))


class AnswerCache:
    """Answers on disk, keyed by (server, model, messages, sampling settings, response format):
    another server with a model of the same name is asked afresh. SQLite with a busy timeout:
    batch worker processes read and write it safely at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT)")

    def _connect(self):
        return sqlite3.connect(self.path, timeout=60)

    @staticmethod
    def key(settings: ServedSettings, messages: list[dict], response_format) -> str:
        sampling = [settings.base_url.rstrip("/"), settings.model, settings.temperature, settings.max_new_tokens]
        sampling.append(settings.seed)
        return hashlib.sha256(json.dumps([sampling, messages, response_format], sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT text FROM answers WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, text: str) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, text))


def cache_dir() -> Path:
    return Path(os.environ.get("MAS_CREDIT_CACHE") or Path.home() / ".cache" / "mas-credit")


class ServedTeam:
    """Agents answered by a served model: each request is one chat (a role, then the game's
    prompt). Failed calls play the null action (counted in `counts["failures"]`)."""

    kind = "openai"

    def __init__(self, settings: ServedSettings, n_agents: int, seed: int = 0, check_ready: bool = True):
        self.settings, self._n_agents, self.seed = settings, n_agents, int(seed)
        self.client = ServedClient(settings)
        if check_ready:
            self.client.check_ready()
        self.calls = 0

    @property
    def n_agents(self) -> int:
        return self._n_agents

    @property
    def counts(self) -> dict:
        return self.client.counts

    def act(self, requests: list[ActRequest]) -> list[ActResult]:
        chats = []
        for req in requests:
            name = req.env.possible_agents[req.agent]
            system = DEFAULT_ROLE.format(agent=name, n_agents=self._n_agents, game=req.env.name)
            chats.append([{"role": "system", "content": system}, {"role": "user", "content": req.prompt}])
        self.calls += len(chats)
        answers = self.client.complete(chats, logprobs=True)
        return [ActResult(text=normalise_text(a.text), logprobs=a.logprobs) for a in answers]


def _check_member(options: dict, n_agents: int) -> None:
    served_settings(options)


OPENAI = TeamKind(
    name="openai",
    build=lambda options, n, seed: ServedTeam(served_settings(options), n, seed),
    check=_check_member,
    description="a model behind an OpenAI-compatible server (never learns)",
)


class ServedCritic:
    """The llm_mca critic on a served model. It asks for the shares as a JSON object with one
    number per agent (`response_format` json_schema; a server that ignores it still gets the
    strict-then-lenient parser), prefixes the answer with the request's marker, and caches
    answers on disk, only those the parser reads: an answer that would fall back (unreadable,
    all zeros) is asked again next time, never served from the cache. A failed call answers ""
    (uniform shares, counted as critic/fallback)."""

    kind = "openai"
    SYSTEM = "You judge cooperative team games. Reply with one line of JSON and nothing else."
    show_actions = False

    def __init__(self, settings: ServedSettings, cache: bool = True, check_ready: bool = True, guard: bool = True):
        self.settings, self.guard = settings, bool(guard)
        self.client = ServedClient(settings)
        if check_ready:
            self.client.check_ready()
        self.cache = AnswerCache(cache_dir() / "served" / "critic.sqlite") if cache else None
        self.calls = 0
        self.cached = 0

    @property
    def counts(self) -> dict:
        return {**self.client.counts, "cached": self.cached}

    @staticmethod
    def response_format(names: list[str]) -> dict:
        schema = {
            "type": "object",
            "properties": {name: {"type": "number"} for name in names},
            "required": list(names),
            "additionalProperties": False,
        }
        return {"type": "json_schema", "json_schema": {"name": "credit_shares", "schema": schema, "strict": True}}

    def score(self, requests) -> list[str]:
        chats = [[{"role": "system", "content": self.SYSTEM}, {"role": "user", "content": r.prompt}] for r in requests]
        formats = [self.response_format(r.keys) for r in requests]
        keys = [AnswerCache.key(self.settings, c, f) for c, f in zip(chats, formats)]
        texts = [self.cache.get(k) if self.cache else None for k in keys]
        todo = [i for i, t in enumerate(texts) if t is None]
        self.cached += len(requests) - len(todo)
        self.calls += len(todo)
        for i, answer in zip(todo, self.client.complete([chats[i] for i in todo], [formats[i] for i in todo])):
            texts[i] = answer.text
            request = requests[i]
            _, flags = parse_shares(f"{request.marker} {answer.text}", request.keys, [], request.marker)
            if self.cache is not None and not answer.failed and not flags["fallback"]:
                self.cache.put(keys[i], answer.text)
        return [f"{r.marker} {t}" if t else "" for r, t in zip(requests, texts)]


@contextmanager
def local_server(model_folder: str | Path, port: int = 0, startup_s: float = 180.0):
    """`transformers serve --continuous-batching` of a local model folder on 127.0.0.1 (a free
    port unless `port` is given), yielding its base_url once it answers; stopped on exit. The
    tests and `benchmarks/served.py` use it (it needs the serve extra). The model id is the
    folder's path."""
    exe = Path(sys.executable).parent / "transformers"
    if not exe.exists():
        raise ServedError(f"{exe} not found: install the serve extra (pip install -e '.[serve]')")
    if not port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--continuous-batching", str(model_folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.time() + startup_s
            while True:
                try:
                    urllib.request.urlopen(f"{url}/models", timeout=2).read()
                    break
                except OSError:
                    if server.poll() is not None or time.time() > deadline:
                        log.seek(0)
                        tail = log.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                        raise ServedError(
                            f"transformers serve did not start at {url} within {startup_s:.0f} s: {tail[0]}"
                        )
                    time.sleep(1)
            yield url
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
