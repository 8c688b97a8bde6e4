"""Group rewards from pairwise outcomes: win rate and Bradley–Terry, on whatever comparisons
exist (an incomplete graph is fine); listwise rankings become pairwise outcomes; a reference
anchor caps what a group can earn by relative position. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["anchored_rewards", "bradley_terry", "merge_outcomes", "ranking_outcomes", "win_rates"]

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
    strength = _bt_strengths(n, outcomes, prior_games=prior_games, iterations=iterations)
    out: list[float | None] = []
    for i in range(n):
        opponents = {j for j, _ in games[i]}
        if not opponents:
            out.append(None)
            continue
        others = [j for j in range(n) if j != i and games[j]]
        out.append(sum(strength[i] / (strength[i] + strength[j]) for j in others) / len(others))
    return out


def _bt_strengths(n: int, outcomes: Outcomes, *, prior_games: float = 1.0, iterations: int = 200) -> list[float]:
    """Bradley–Terry strengths (geometric mean 1) by Hunter's MM updates, with a ghost-tie prior.

    Each player's wins and opponents are gathered once, outside the iterations: the same sums in
    the same order as a per-iteration recount, so the strengths are bit for bit the same, at a
    fraction of the CPU (this runs for every group of every GRPO step)."""
    games = _players(n, outcomes)
    wins = [sum(o for _, o in g) + 0.5 * prior_games for g in games]
    opponents = [[j for j, _ in g] for g in games]
    rows = list(zip(range(n), wins, opponents, strict=True))
    log, exp = math.log, math.exp
    strength = [1.0] * n
    for _ in range(iterations):
        updated = []
        for i, won, against in rows:
            own = strength[i]
            updated.append(won / (sum([1.0 / (own + strength[j]) for j in against]) + prior_games / (own + 1.0)))
        # normalise by the geometric mean so the scale does not drift
        scale = exp(sum([log(s) for s in updated]) / n)
        updated = [s / scale for s in updated]
        done = max([abs(a - b) for a, b in zip(updated, strength, strict=True)]) < 1e-9
        strength = updated
        if done:
            break
    return strength


def ranking_outcomes(ranking: Sequence[int]) -> dict[tuple[int, int], float]:
    """Pairwise outcomes implied by one ranking (best first): every earlier item beat every later one.

    Keys are (i, j) with i < j; an item missing from the ranking simply plays no game."""
    out: dict[tuple[int, int], float] = {}
    for pos, better in enumerate(ranking):
        for worse in ranking[pos + 1 :]:
            key = (better, worse) if better < worse else (worse, better)
            out[key] = 1.0 if key[0] == better else 0.0
    return out


def merge_outcomes(rounds: Sequence[Mapping[tuple[int, int], float]]) -> tuple[dict[tuple[int, int], float], dict[tuple[int, int], bool]]:
    """Mean outcome per pair over the rounds that compared it, and whether the rounds disagreed
    (a pair whose order flipped between shuffles is position-driven: it averages to a tie)."""
    seen: dict[tuple[int, int], list[float]] = {}
    for outcomes in rounds:
        for pair, outcome in outcomes.items():
            seen.setdefault(pair, []).append(outcome)
    merged = {pair: sum(values) / len(values) for pair, values in seen.items()}
    flipped = {pair: max(values) - min(values) >= 1.0 for pair, values in seen.items()}
    return merged, flipped


def anchored_rewards(n: int, outcomes: Outcomes, *, floor: float = 0.1) -> list[float | None]:
    """Group rewards for players 0..n-1 when player n, the reference, also played.

    Each player's Bradley–Terry expected win rate against the other rollouts, scaled by how it
    fared against the reference: level with or above it (outcome ≥ 0.5) keeps the full group
    reward, below it in every comparison keeps only `floor` of it. So a group where every answer
    is wrong (or content-free) cannot earn reward by relative position, while its order is kept.
    A player that never met the reference is scaled by its fitted chance of beating it. None for
    a player with no game."""
    anchor = n
    strengths = _bt_strengths(n + 1, outcomes)
    games = _players(n + 1, outcomes)
    group = bradley_terry(n, {pair: o for pair, o in outcomes.items() if anchor not in pair})
    out: list[float | None] = []
    for i in range(n):
        if not games[i]:
            out.append(None)
            continue
        direct = outcomes.get((i, anchor))
        versus = direct if direct is not None else strengths[i] / (strengths[i] + strengths[anchor])
        standing = group[i]
        base = standing if standing is not None else 0.5  # only compared with the reference: its standing alone
        out.append(base * (floor + (1.0 - floor) * min(1.0, 2.0 * versus)))
    return out
