"""Group rewards from pairwise outcomes: win rate and Bradley–Terry. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["bradley_terry", "win_rates"]

Outcomes = Mapping[tuple[int, int], float]
"""(i, j) -> how much i beat j: 1 win, 0.5 tie, 0 loss. Each unordered pair appears once."""


def _players(n: int, outcomes: Outcomes) -> list[list[tuple[int, float]]]:
    games: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for (i, j), o in outcomes.items():
        games[i].append((j, o))
        games[j].append((i, 1.0 - o))
    return games


def win_rates(n: int, outcomes: Outcomes) -> list[float | None]:
    """Each player's mean outcome; None for one that played no game."""
    return [sum(o for _, o in g) / len(g) if g else None for g in _players(n, outcomes)]


def bradley_terry(n: int, outcomes: Outcomes, *, prior_games: float = 1.0, iterations: int = 200) -> list[float | None]:
    """Expected win probability against the others under a fitted Bradley–Terry model.

    Fitted with Hunter's MM updates; every player also ties `prior_games` games against a ghost
    of strength 1, which keeps strengths finite when a player won or lost everything.
    Returns None for a player that played no game.
    """
    games = _players(n, outcomes)
    strength = [1.0] * n
    for _ in range(iterations):
        updated = []
        for i in range(n):
            wins = sum(o for _, o in games[i]) + 0.5 * prior_games
            denom = sum(1.0 / (strength[i] + strength[j]) for j, _ in games[i]) + prior_games / (strength[i] + 1.0)
            updated.append(wins / denom)
        # normalise by the geometric mean so the scale does not drift
        log_mean = sum(math.log(s) for s in updated) / n
        updated = [s / math.exp(log_mean) for s in updated]
        done = max(abs(a - b) for a, b in zip(updated, strength, strict=True)) < 1e-9
        strength = updated
        if done:
            break
    out: list[float | None] = []
    for i in range(n):
        opponents = {j for j, _ in games[i]}
        if not opponents:
            out.append(None)
            continue
        others = [j for j in range(n) if j != i and games[j]]
        out.append(sum(strength[i] / (strength[i] + strength[j]) for j in others) / len(others))
    return out
