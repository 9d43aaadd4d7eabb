"""Scripted policies for simulation: each agent plays the game's right action with
probability `skill`, a valid but wrong action otherwise, malformed text at rate
`malformed_rate`, nothing at all when lazy, and always a valid but wrong action when a
saboteur.

They read the right action from the env (privileged access), which is what makes
them a controlled instrument for studying credit: the ground truth of who did what
is set by the experimenter. Randomness comes only from the per-episode generator
that `rollout.collect` hands in, so episodes do not depend on batch order.
"""

from __future__ import annotations

from mas_credit.agents.protocol import ActRequest, ActResult

MALFORMED = [
    "hmm, let me think about that",
    "I am not sure what to do here.",
    "...",
    "As an AI I cannot answer",
    "<tool_call>{}</tool_call>",
    "ok ok ok",
    "????",
    "the the the",
]


class ScriptedTeam:
    """A team of scripted agents.

    Args:
      skills: probability of the right action, one per agent (its length is the team size).
      lazy: agent indices that always answer with empty text (their null action).
      saboteurs: agent indices that always answer a valid but wrong action.
      malformed_rate: probability that an agent's text is unparseable.
      seed: mixed into every episode's generator, so two teams with different seeds
        play the same tasks differently.
    """

    kind = "scripted"

    def __init__(self, skills, lazy=(), malformed_rate: float = 0.0, seed: int = 0, saboteurs=()):
        skills = [float(s) for s in skills]
        if not skills or any(not 0.0 <= s <= 1.0 for s in skills):
            raise ValueError(f"team.skills must be a non-empty list of probabilities in [0, 1], got {skills}")
        if not 0.0 <= malformed_rate <= 1.0:
            raise ValueError(f"team.malformed_rate must be in [0, 1], got {malformed_rate}")
        for name, agents in (("lazy", lazy), ("saboteurs", saboteurs)):
            bad = [i for i in agents if not 0 <= int(i) < len(skills)]
            if bad:
                raise ValueError(
                    f"team.{name} {bad} are not agents of a team of {len(skills)} (valid: 0..{len(skills) - 1})"
                )
        self.skills = skills
        self.lazy = sorted(int(i) for i in lazy)
        self.saboteurs = sorted(int(i) for i in saboteurs)
        self.malformed_rate = float(malformed_rate)
        self.seed = int(seed)

    @property
    def n_agents(self) -> int:
        return len(self.skills)

    def act(self, requests: list[ActRequest]) -> list[ActResult]:
        return [self.act_one(req, self.malformed_rate) for req in requests]

    def act_one(self, req: ActRequest, malformed_rate: float) -> ActResult:
        env, i, rng = req.env, req.agent, req.rng
        u_malformed, u_skill = rng.random(), rng.random()
        if i in self.lazy:
            text = ""
        elif u_malformed < malformed_rate:
            text = MALFORMED[int(rng.integers(len(MALFORMED)))]
        elif u_skill < self.skills[i] and i not in self.saboteurs:
            text = env.render_action(i, env.expert_action(i))
        else:
            text = env.render_action(i, env.wrong_action(i, rng))
        return ActResult(text=text)
