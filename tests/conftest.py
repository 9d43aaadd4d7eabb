import itertools
import math
import os

import numpy as np
import pytest
import torch

from mas_credit.games import list_games, make_game

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # pytest-xdist workers share the cores: each takes its share of threads, for torch here and for the
    # processes its tests start (by default each would take every core, and OpenMP threads that
    # outnumber the cores make the LLM tests several times slower)
    CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    THREADS = max(1, CORES // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(THREADS)
    os.environ["OMP_NUM_THREADS"] = str(THREADS)


def brute_force_shapley(value, n_agents):
    """Shapley by enumerating every ordering of the agents: the slow, obvious definition."""
    phi = np.zeros(n_agents)
    for order in itertools.permutations(range(n_agents)):
        mask = 0
        for i in order:
            phi[i] += value(mask | (1 << i)) - value(mask)
            mask |= 1 << i
    return phi / math.factorial(n_agents)


@pytest.fixture(params=list_games())
def game_name(request):
    return request.param


def sizes_for(name):
    game = make_game(name)
    return [n for n in (2, 3, 5, 8) if game.min_agents <= n <= game.max_agents]


@pytest.fixture
def run_main(capsys):
    """The CLI's entry point in this process: run_main(*argv) -> (exit code, stdout, stderr).

    A subprocess per call costs seconds of imports, so the error cases run here; the tests
    that need the real command line (signals, pipes, both streams in one log, the
    interpreter's exit code) still start one."""
    from mas_credit.cli import main

    def run(*argv):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as stop:  # argparse's own errors exit rather than return
            code = stop.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
