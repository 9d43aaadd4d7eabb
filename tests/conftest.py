import itertools
import math

import numpy as np
import pytest

from mas_credit.games import list_games, make_game


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
