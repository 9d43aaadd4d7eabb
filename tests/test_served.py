"""Served models (mas_credit.agents.served) against a throwaway OpenAI-compatible server of
our own on 127.0.0.1: retries of HTTP 429/500, malformed answers and timeouts, a server that
dies mid-study, the unreachable server's one-line error, the on-disk critic cache, and a
served teammate in a mixed team; then against a real one, `transformers serve` with the
default model. Nothing here reaches beyond 127.0.0.1."""

import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from mas_credit.agents import load_team
from mas_credit.agents.hf import default_model_path
from mas_credit.agents.served import AnswerCache, ServedClient, ServedCritic, local_server, served_settings
from mas_credit.config import ConfigError, load_experiment, validate_train
from mas_credit.games import make_game
from mas_credit.rollout import collect
from mas_credit.studies import run_study

from .test_studies import ROOT

pytest.importorskip(
    "openai", reason="served models need the serve extra (pip install -e .[serve]; setup.sh installs it)"
)
QUICK = ROOT / "experiments" / "study_quickstart.yaml"


class FakeServer:
    """POST /v1/chat/completions answers by `behaviours` (popped in order; then "ok"): ok, 429,
    500, garbage (200 with a body that is not JSON), nonsense (a well-formed answer whose text
    holds no shares), slow (sleeps past the client's timeout).
    An ok answer to the critic is a JSON object of equal shares; to a player, the last digit of
    its prompt in vault's asked form. `die_after` completions, it stops listening."""

    def __init__(self, behaviours=(), die_after: int | None = None):
        self.behaviours, self.die_after, self.completions, self.requests = list(behaviours), die_after, 0, []
        self.dead = False
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.reply(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "tests"}],
                    },
                )

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if fake.dead:  # killed: the connection drops with no answer, then the port closes
                    self.close_connection = True
                    return
                with fake.lock:
                    fake.requests.append(request)
                    behaviour = fake.behaviours.pop(0) if fake.behaviours else "ok"
                if behaviour == "429":
                    return self.reply(429, {"error": {"message": "slow down", "type": "rate_limit"}})
                if behaviour == "500":
                    return self.reply(500, {"error": {"message": "boom", "type": "server_error"}})
                if behaviour == "garbage":
                    return self.reply(200, b"<html>not json</html>")
                if behaviour == "slow":
                    time.sleep(1.0)
                text = "I cannot say." if behaviour == "nonsense" else fake.answer(request)
                self.reply(
                    200,
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "fake-model",
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text},
                                "logprobs": {
                                    "content": [{"token": "t", "logprob": -0.25, "bytes": None, "top_logprobs": []}]
                                },
                            }
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
                    },
                )
                with fake.lock:
                    fake.completions += 1
                    if fake.die_after is not None and fake.completions >= fake.die_after:
                        fake.dead = True
                        threading.Thread(target=fake.stop).start()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def answer(request) -> str:
        if "response_format" in request:
            names = request["response_format"]["json_schema"]["schema"]["required"]
            return json.dumps({name: round(1 / len(names), 4) for name in names})
        digits = re.findall(r"(?<!\d)(\d)(?!\d)", request["messages"][-1]["content"])
        return f"DIGIT: {digits[-1] if digits else 0}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    servers = []

    def start(behaviours=(), die_after=None):
        servers.append(FakeServer(behaviours, die_after))
        return servers[-1]

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.stop()


def settings(url, **more):
    return served_settings({"base_url": url, "model": "fake-model", "backoff_s": 0.01, **more}, "test")


def chat(text="hello"):
    return [{"role": "user", "content": text}]


def test_429_then_success_is_retried_and_counted(fake):
    server = fake(["429", "ok"])
    client = ServedClient(settings(server.url))
    [answer] = client.complete([chat("Your digit is 7.")], logprobs=True)
    assert answer.text == "DIGIT: 7" and answer.logprobs == [-0.25] and not answer.failed
    assert client.counts == {"calls": 2, "retries": 1, "failures": 0, "prompt_tokens": 10, "completion_tokens": 3}


def test_500_malformed_and_timeouts_are_retried_then_counted_as_a_failure(fake):
    server = fake(["500", "garbage", "slow", "500"])
    client = ServedClient(settings(server.url, max_retries=3, timeout_s=0.3))
    [answer] = client.complete([chat()])
    assert answer.failed and answer.text == "" and answer.logprobs is None
    assert client.counts["calls"] == 4 and client.counts["retries"] == 3 and client.counts["failures"] == 1
    assert [r["model"] for r in server.requests] == ["fake-model"] * 4


def test_requests_go_out_concurrently_up_to_the_limit(fake):
    server = fake()
    client = ServedClient(settings(server.url, max_concurrency=3))
    answers = client.complete([chat(f"Your digit is {d}.") for d in range(9)])
    assert [a.text for a in answers] == [f"DIGIT: {d}" for d in range(9)]  # in order, whatever finished first
    assert client.counts["calls"] == 9 and client.counts["failures"] == 0


def critic_study(url, tmp_path, *more):
    cfg = load_experiment(
        QUICK,
        [
            "games=[vault]",
            "estimators=[llm_mca]",
            "seeds=[0]",
            "n_tasks=3",
            "group_size=2",
            "critic.kind=openai",
            f"critic.base_url={url}",
            "critic.model=fake-model",
            "critic.max_retries=1",
            *more,
        ],
    )
    return run_study(cfg, out_dir=tmp_path, progress=False)


def test_a_server_killed_mid_study_falls_back_counts_it_and_the_study_completes(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("MAS_CREDIT_CACHE", str(tmp_path / "cache"))
    server = fake(die_after=2)
    run = critic_study(server.url, tmp_path / "run", "critic.cache=false", "critic.max_concurrency=1")
    costs = json.loads((run / "costs.json").read_text())["served"]["critic"]
    assert costs["failures"] == 4 and costs["calls"] == 2 + 4 * 2  # 6 episodes: 2 answered, 4 retried once
    records = [r for r in json.loads((run / "costs.json").read_text())["records"] if r["estimator"] == "llm_mca"]
    assert records[0]["critic_fallback"] == 4
    summary = (run / "summary.md").read_text()
    assert (
        "Served model (critic): 10 calls, 4 retries, 4 failed after their retries (those episodes fell back to "
        "uniform shares)" in summary
    )
    frame = pd.read_parquet(run / "credit.parquet")
    assert len(frame[frame["estimator"] == "llm_mca"]) == 6 * 3


def test_critic_answers_are_cached_on_disk(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("MAS_CREDIT_CACHE", str(tmp_path / "cache"))
    server = fake()
    critic_study(server.url, tmp_path / "first")
    asked = len(server.requests)
    assert asked == 6 and all(r["response_format"]["type"] == "json_schema" for r in server.requests)
    again = critic_study(server.url, tmp_path / "again")  # the same episodes: no new calls
    assert len(server.requests) == asked
    assert json.loads((again / "costs.json").read_text())["served"]["critic"]["cached"] == 6
    first = pd.read_parquet(tmp_path / "first" / "credit.parquet")
    assert first["credit"].equals(pd.read_parquet(again / "credit.parquet")["credit"])
    critic = ServedCritic(settings(server.url, temperature=0.5))  # other sampling settings: asked again
    assert critic.cache is not None and critic.counts["cached"] == 0


@pytest.mark.reliability(
    "a served critic that answers nonsense, then a healthy server with a model of the same name",
    "nonsense is never cached (each run asks again; fallbacks counted); the healthy server is asked, "
    "not answered from the first server's cache",
)
def test_the_critic_cache_is_keyed_by_server_and_never_holds_a_fallback(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("MAS_CREDIT_CACHE", str(tmp_path / "cache"))
    garbage = fake(behaviours=["nonsense"] * 12)
    for run in ("first", "second"):  # nothing readable was cached: the second run asks again
        out = critic_study(garbage.url, tmp_path / run)
        costs = json.loads((out / "costs.json").read_text())
        assert costs["served"]["critic"]["cached"] == 0
        assert next(r for r in costs["records"] if r["estimator"] == "llm_mca")["critic_fallback"] == 6
    assert len(garbage.requests) == 12
    healthy = fake()  # same model name, another server
    out = critic_study(healthy.url, tmp_path / "healthy")
    costs = json.loads((out / "costs.json").read_text())
    assert len(healthy.requests) == 6 and costs["served"]["critic"]["cached"] == 0
    assert next(r for r in costs["records"] if r["estimator"] == "llm_mca")["critic_fallback"] == 0
    # now a readable answer is cached, for that server only
    assert (
        json.loads((critic_study(healthy.url, tmp_path / "again") / "costs.json").read_text())["served"]["critic"][
            "cached"
        ]
        == 6
    )
    assert AnswerCache.key(settings(healthy.url), chat(), None) != AnswerCache.key(settings(garbage.url), chat(), None)


@pytest.mark.reliability(
    "the served model's server cannot be reached when a run starts",
    "one line naming the URL and how to start the server; exit 2",
)
def test_an_unreachable_server_is_a_one_line_error(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mas_credit.cli",
            "study",
            str(QUICK),
            "games=[vault]",
            "seeds=[0]",
            "estimators=[llm_mca]",
            "critic.kind=openai",
            "critic.base_url=http://127.0.0.1:9/v1",
            "critic.model=m",
            "--out",
            str(tmp_path / "x"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "cannot reach the served model at http://127.0.0.1:9/v1" in out.stderr and "vllm serve" in out.stderr
    check = subprocess.run(
        [sys.executable, "-m", "mas_credit.cli", "serve-check", "http://127.0.0.1:9/v1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert check.returncode == 2 and "cannot reach the served model at http://127.0.0.1:9/v1" in check.stderr


def test_serve_check_lists_the_models(fake):
    server = fake()
    with pytest.raises(
        ValueError, match=f"the server at {re.escape(server.url)} does not serve 'other'; it serves: fake-model"
    ):
        ServedClient(settings(server.url, model="other")).check_ready()
    ServedClient(settings(server.url, model="fake-model:my_lora")).check_ready()  # SGLang's base:adapter ids
    out = subprocess.run(
        [sys.executable, "-m", "mas_credit.cli", "serve-check", server.url], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0 and out.stdout == f"{server.url} serves 1 model(s):\n  fake-model\n"


def test_a_served_teammate_plays_its_agent_records_logprobs_and_never_learns(fake, tmp_path):
    server = fake()
    member = f"{{kind: openai, base_url: '{server.url}', model: fake-model}}"
    cfg = load_experiment(
        QUICK,
        [
            "games=[vault]",
            "seeds=[0]",
            "estimators=[sharp]",
            "team=tabular_trio",
            f"team.members=[{member}, {{kind: tabular}}, {{kind: scripted, skill: 1.0}}]",
        ],
    )
    team = load_team(cfg.team, n_agents=3)
    assert team.learner_agents() == [1]
    game = make_game("vault", n_agents=3)
    episodes = collect(game, team, n_tasks=4, group_size=2, seed=0)
    for ep in episodes:
        turn = ep.turns[0]
        assert turn.text == f"DIGIT: {game.make_task(ep.task_seed)['digits'][0]}" and turn.logprobs == [-0.25]
        assert turn.response_ids is None  # nothing a trainer could update
    assert team.plugged[0].counts["calls"] == 8
    with pytest.raises(
        ConfigError, match=r"train.trained_agents \[0\] are scripted, frozen, served or plug-in members"
    ):
        validate_train(
            load_experiment(
                QUICK,
                [
                    *[f"{k}" for k in ["games=[vault]", "estimators=[sharp]", "team=tabular_trio"]],
                    f"team.members=[{member}, {{kind: tabular}}, {{kind: tabular}}]",
                    "train.trained_agents=[0]",
                ],
            )
        )


@pytest.mark.parametrize(
    "options,message",
    [
        ({"base_url": "127.0.0.1:8000"}, "base_url must be the server's http(s) URL"),
        ({"model": ""}, "model is empty; name the served model (mas-credit serve-check"),
        ({"timeout": 3}, "unknown option timeout; valid options: base_url, model"),
        ({"max_retries": "3"}, "max_retries must be int (like 3), got '3'"),
        ({"api_key_env": "MAS_CREDIT_NO_SUCH_KEY"}, "api_key_env names $MAS_CREDIT_NO_SUCH_KEY, which is not set"),
    ],
)
def test_bad_served_settings_are_one_line_errors(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        served_settings({"base_url": "http://127.0.0.1:8000/v1", "model": "m", **options}, "critic")


@pytest.fixture(scope="module")
def served_smollm2():
    """`transformers serve` with the default model (SmolLM2) on 127.0.0.1, ready; stopped afterwards."""
    folder, _ = default_model_path()
    with local_server(folder) as url:
        yield url, str(folder)


@pytest.mark.slow
def test_a_real_served_critic_study_and_a_served_teammate_run_end_to_end(served_smollm2, tmp_path, monkeypatch):
    monkeypatch.setenv("MAS_CREDIT_CACHE", str(tmp_path / "cache"))
    url, model = served_smollm2
    run = critic_study(
        url,
        tmp_path / "critic",
        f"critic.model={model}",
        "n_tasks=1",
        "critic.max_new_tokens=32",
        "critic.timeout_s=300.0",
    )
    served = json.loads((run / "costs.json").read_text())["served"]["critic"]
    assert served["calls"] == 2 and served["failures"] == 0 and served["completion_tokens"] > 0
    assert len(pd.read_parquet(run / "credit.parquet").query("estimator == 'llm_mca'")) == 2 * 3
    member = f"{{kind: openai, base_url: '{url}', model: '{model}', max_new_tokens: 8, timeout_s: 300.0}}"
    cfg = load_experiment(
        QUICK,
        [
            "games=[vault]",
            "seeds=[0]",
            "n_tasks=1",
            "group_size=2",
            "estimators=[shapley]",
            "team=tabular_trio",
            f"team.members=[{member}, {{kind: scripted}}, {{kind: scripted}}]",
        ],
    )
    run = run_study(cfg, out_dir=tmp_path / "teammate", progress=False)
    served = json.loads((run / "costs.json").read_text())["served"]["team of 3"]
    assert served["calls"] == 2 and served["failures"] == 0
    turns = [json.loads(line)["turns"][0] for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert len(turns) == 2 and all(turn["agent"] == 0 and turn["text"] for turn in turns)
    assert (
        "Served model (team of 3): 2 calls, 0 retries, 0 failed after their retries (those turns played the null "
        "action)" in (run / "summary.md").read_text()
    )


WRITER = """
import sys
from mas_credit.agents.served import AnswerCache
cache = AnswerCache(sys.argv[1])
for k in range(200):
    cache.put(f"{sys.argv[2]}-{k}", "x" * k)
    assert cache.get(f"{sys.argv[2]}-{k}") == "x" * k
"""


def test_the_answer_cache_is_shared_safely_by_processes_writing_at_once(tmp_path):
    path = tmp_path / "critic.sqlite"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name], cwd=ROOT) for name in ("a", "b", "c")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    cache = AnswerCache(path)
    assert all(cache.get(f"{name}-{k}") == "x" * k for name in "abc" for k in range(200))


def test_a_batch_of_a_served_team_with_a_served_critic_shares_the_cache_across_workers(fake, tmp_path):
    """A scripted evaluation batch of a served team (nothing trained), 2 worker processes; the
    second batch over the same runs answers every critic call from the shared disk cache."""
    server = fake()
    served = f"{{base_url: '{server.url}', model: fake-model}}"
    spec = {
        "name": "served",
        "base": str(QUICK),
        "mode": "study",
        "overrides": [
            "game=vault",
            "n_tasks=2",
            "group_size=2",
            "estimators=[llm_mca]",
            f"team={{use: openai, params: {served}}}",
            "critic.kind=openai",
            f"critic.base_url={server.url}",
            "critic.model=fake-model",
        ],
        "grid": {"seeds": [[0], [1]]},
        "executor": {"kind": "local", "workers": 2},
    }
    (tmp_path / "batch.yaml").write_text(json.dumps(spec))
    env = dict(os.environ, MAS_CREDIT_CACHE=str(tmp_path / "cache"))
    for out in ("first", "second"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mas_credit.cli",
                "batch",
                str(tmp_path / "batch.yaml"),
                "--out",
                str(tmp_path / out),
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
        )
        assert done.returncode == 0, done.stderr + done.stdout
    costs = [json.loads(p.read_text())["served"] for p in sorted((tmp_path / "second").rglob("costs.json"))]
    assert len(costs) == 2 and all(c["critic"]["cached"] == 4 and c["critic"]["calls"] == 0 for c in costs)
    assert all(c["team of 3"]["calls"] == 3 * 4 and c["team of 3"]["failures"] == 0 for c in costs)
    critic_calls = [r for r in server.requests if "response_format" in r]
    assert len(critic_calls) == 2 * 4  # the first batch's only
    assert "| vault | llm_mca | 2 |" in (tmp_path / "second" / "batch.md").read_text()
