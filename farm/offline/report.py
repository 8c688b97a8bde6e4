"""The rescoring report: per-judge score distributions, agreement, disagreement, failures,
tokens and cost, and accuracy/AUC against a gold label. A JSON summary and a self-contained
HTML page whose plots are inline SVG (readable without a server or a plotting library)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from farm.config import FarmConfig
from farm.offline.results import ScoreColumns
from farm.stats import auc, pearson

__all__ = ["auc", "render_html", "summarise"]  # `auc` lives in farm.stats; re-exported for old imports


def _histogram(values: Any, bins: int = 20) -> list[int]:
    import numpy as np

    present = values[~np.isnan(values)]
    return [int(c) for c in np.histogram(np.clip(present, 0, 1), bins=bins, range=(0.0, 1.0))[0]]


def _label_metrics(scores: Any, labels: Any) -> dict[str, Any] | None:
    import numpy as np

    both = ~np.isnan(scores) & ~np.isnan(labels)
    if not both.any():
        return None
    s, y = scores[both], labels[both]
    area = auc(s, y)
    return {
        "n": int(both.sum()),
        "accuracy": round(float(((s >= 0.5) == (y >= 0.5)).mean()), 4),
        "auc": None if area is None else round(area, 4),
    }


def summarise(data: ScoreColumns, config: FarmConfig, *, elapsed_s: float | None = None, invalid_rows: int = 0) -> dict[str, Any]:
    import numpy as np

    reward, label, scores = data.arrays()
    from farm.cost import PriceTable, Usage

    prices = PriceTable.from_config(config)
    models = {j.name: getattr(j, "model", None) for j in config.judges}
    tiers = {j.name: str(getattr(j, "service_tier", "default")) for j in config.judges}
    judges: dict[str, Any] = {}
    for name in data.judges:
        column = scores[name]
        present = column[~np.isnan(column)]
        tokens_in, tokens_out, cache_read, cache_write = data.tokens[name]
        model = models.get(name)
        cost = prices.cost(model, Usage(tokens_in, tokens_out, cache_read, cache_write), tiers[name]) if model else None
        judges[name] = {
            "model": models.get(name),
            "scored": int(present.size),
            "status": dict(data.judge_status[name]),
            "failures_by_reason": dict(data.reasons[name]),
            "mean_score": round(float(present.mean()), 4) if present.size else None,
            "histogram": _histogram(column),
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "cache_read_tokens": cache_read,
            "cache_write_tokens": cache_write,
            "cost_usd": None if cost is None else round(cost.usd, 6),
            "cost_without_prompt_cache_usd": None if cost is None else round(cost.uncached_usd, 6),
            "against_label": _label_metrics(column, label),
        }
    columns = {name: scores[name].tolist() for name in data.judges}  # farm.stats is pure Python: lists iterate fastest
    pairs: dict[frozenset[str], float | None] = {}
    for a in data.judges:
        for b in data.judges:
            if a != b and frozenset((a, b)) not in pairs:
                r = pearson(columns[a], columns[b])
                pairs[frozenset((a, b))] = None if r is None else round(r, 3)
    agreement = {a: {b: 1.0 if a == b else pairs[frozenset((a, b))] for b in data.judges} for a in data.judges}
    rewards = reward[~np.isnan(reward)]
    n = data.rows
    return {
        "rows": n,
        "invalid_rows": invalid_rows,
        "status": dict(data.status),
        "mean_reward": round(float(rewards.mean()), 4) if rewards.size else None,
        "reward_histogram": _histogram(reward),
        "flags": dict(data.flags),
        "disagreement_rate": round(data.flags.get("high_disagreement", 0) / n, 4) if n else None,
        "escalated": data.escalated,
        "escalation": {name: dict(counts) for name, counts in data.escalation.items()},
        "judges": judges,
        "agreement_pearson": agreement,
        "ensemble_against_label": _label_metrics(reward, label),
        "cache_read_tokens": sum(j["cache_read_tokens"] for j in judges.values()),
        "cache_write_tokens": sum(j["cache_write_tokens"] for j in judges.values()),
        "total_cost_usd": None
        if all(j["cost_usd"] is None for j in judges.values())
        else round(sum(j["cost_usd"] or 0 for j in judges.values()), 6),
        "total_cost_without_prompt_cache_usd": None
        if all(j["cost_without_prompt_cache_usd"] is None for j in judges.values())
        else round(sum(j["cost_without_prompt_cache_usd"] or 0 for j in judges.values()), 6),
        "cost_per_row_usd": None
        if n == 0 or all(j["cost_usd"] is None for j in judges.values())
        else round(sum(j["cost_usd"] or 0 for j in judges.values()) / n, 8),
        "elapsed_s": elapsed_s,
    }


def _svg_histogram(counts: Sequence[int], title: str) -> str:
    width, height, pad = 320, 140, 20
    top = max(counts) or 1
    bar = (width - 2 * pad) / len(counts)
    bars = ""
    for i, c in enumerate(counts):
        h = (c / top) * (height - 2 * pad)
        low, high = i / len(counts), (i + 1) / len(counts)
        bars += (
            f'<rect x="{pad + i * bar:.1f}" y="{height - pad - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" fill="#4C72B0">'
            f"<title>{low:.2f}-{high:.2f}: {c}</title></rect>"
        )
    axis = f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>'
    labels = f'<text x="{pad}" y="{height - 4}" font-size="10">0</text><text x="{width - pad - 6}" y="{height - 4}" font-size="10">1</text>'
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">'
        f"{bars}{axis}{labels}</svg><figcaption>{html.escape(title)} (max bin {top})</figcaption></figure>"
    )


def _cell(value: Any) -> str:
    if value is None:
        return "<td>—</td>"
    if isinstance(value, float) and -1 <= value <= 1:
        shade = int(255 - 120 * abs(value))
        return f'<td style="background: rgb({shade},{shade},255)">{value:.3f}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _counts(counts: dict[str, Any]) -> str:
    """`{"ok": 95, "failed": 5}` as `ok 95, failed 5` (no Python dicts in a report)."""
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "—"


def _metrics(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "—"
    auc_text = "—" if metrics.get("auc") is None else f"{metrics['auc']:.3f}"
    return f"accuracy {metrics['accuracy']:.3f}, AUC {auc_text} (n {metrics['n']})"


def _judge_row(name: str, j: dict[str, Any]) -> str:
    cost = "no price configured" if j["cost_usd"] is None else f"${j['cost_usd']:.4f}"
    if j["model"] is None:
        cost = "—"
    label = _metrics(j["against_label"])
    cells = [j["model"] or "rule/local", j["scored"], j["mean_score"], _counts(j["status"]), _counts(j["failures_by_reason"])]
    cells += [j["input_tokens"], j["output_tokens"], f"{j.get('cache_read_tokens', 0)} / {j.get('cache_write_tokens', 0)}", cost, label]
    return f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def render_html(summary: dict[str, Any], title: str) -> str:
    judges = summary["judges"]
    rows = "".join(_judge_row(name, j) for name, j in judges.items())
    names = list(summary["agreement_pearson"])
    matrix = "<tr><th></th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    for a in names:
        matrix += f"<tr><th>{html.escape(a)}</th>" + "".join(_cell(summary["agreement_pearson"][a][b]) for b in names) + "</tr>"
    plots = _svg_histogram(summary["reward_histogram"], "ensemble reward") + "".join(
        _svg_histogram(j["histogram"], f"{name} score") for name, j in judges.items()
    )
    flags = "".join(f"<li><code>{html.escape(k)}</code>: {v}</li>" for k, v in sorted(summary["flags"].items())) or "<li>none</li>"
    ensemble = summary["ensemble_against_label"]
    total = summary["total_cost_usd"]
    per_row = summary.get("cost_per_row_usd")
    cost = "no cost estimate (no `prices` configured for these models)" if total is None else f"estimated cost ${total:.4f}"
    if total is not None and per_row is not None:
        cost += f" (${per_row:.6f} per row, at list prices unless `prices` says otherwise)"
    uncached = summary.get("total_cost_without_prompt_cache_usd")
    if total is not None and uncached is not None and summary.get("cache_read_tokens"):
        cost += f"; ${uncached:.4f} without prompt caching ({summary['cache_read_tokens']} prompt tokens read from the cache)"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}} figure{{display:inline-block;margin:0 1em 1em 0}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{summary["rows"]} results ({html.escape(_counts(summary["status"]))}), {summary["invalid_rows"]} invalid input rows,
mean reward {summary["mean_reward"]}, disagreement rate {summary["disagreement_rate"]},
{cost}.</p>
<h2>Ensemble against the label</h2><p>{html.escape(_metrics(ensemble)) if ensemble else "no label column given"}</p>
<h2>Judges</h2><table><tr><th>judge</th><th>model</th><th>scored</th><th>mean</th><th>status</th><th>failures by reason</th>
<th>input tokens</th><th>output tokens</th><th>prompt cache read / written</th><th>est. cost</th><th>against label</th></tr>{rows}</table>
<h2>Score distributions</h2>{plots}
<h2>Judge agreement (Pearson r on rows both scored)</h2><table>{matrix}</table>
<h2>Flags</h2><ul>{flags}</ul>
</body></html>
"""
