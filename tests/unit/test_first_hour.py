"""Pure pieces of the first hour: the degradation verdict behind exit code 3, the progress line on a
terminal and in a log, the backend line, the preference rationale, the report's text, and the
Python API's warning when Bedrock judges have no credentials."""

from __future__ import annotations

import io
import os
import pty
import select
import warnings

import pytest

from farm import embedded
from farm.config import load_config, parse_config
from farm.embedded import describe_backend
from farm.ensemble import Ensemble
from farm.judges.preference import _Comparison, _rationale
from farm.offline.report import render_html
from farm.progress import Progress
from farm.scorefile import degradation


def test_a_judge_failing_everywhere_is_degraded_whatever_the_share():
    line, over = degradation(
        10, {"partial": 10}, {"rule": {"ok": 10}, "rubric": {"failed": 10}}, {"rubric": {"Unable to locate credentials": 10}}, max_share=0.5
    )
    assert line == "judge rubric failed on every rollout (10 of 10): Unable to locate credentials" and over
    assert degradation(10, {"partial": 10}, {"rubric": {"failed": 10}}, max_share=1.0)[1] is False


def test_skipped_verdicts_do_not_count_as_asked():
    line, over = degradation(4, {"ok": 4}, {"rule": {"ok": 4}, "preference": {"skipped": 4}})
    assert (line, over) == ("no degraded rollouts: all 4 ok", False)


def test_share_of_partial_rollouts_against_the_limit():
    status, judges, errors = {"ok": 97, "partial": 3}, {"rule": {"ok": 100}, "rubric": {"ok": 97, "timeout": 3}}, {"rubric": {"timeout": 3}}
    strict = degradation(100, status, judges, errors)
    assert strict == (
        "3 of 100 rollouts degraded (3%: 3 partial); judge rubric failed on 3: timeout; above the allowed share 0 (--max-degraded)",
        True,
    )
    assert degradation(100, status, judges, errors, max_share=0.05)[1] is False


def test_progress_on_a_pseudo_terminal_redraws_in_place():
    leader, follower = pty.openpty()
    stream = os.fdopen(follower, "w")
    progress = Progress("scoring", 4, stream=stream, interval_s=60, throttled=lambda: 7)
    assert progress.tty
    progress.start()
    progress.advance(2, failed=1)
    progress.close()
    stream.close()
    seen = b""
    while select.select([leader], [], [], 1.0)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed and everything was read
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    text = seen.decode()
    assert text.startswith("\rscoring 0/4 rollouts, ")
    assert "\rscoring 2/4 rollouts, " in text and "429s 7, failed verdicts 1" in text and text.endswith("\n")
    assert "ETA " in text


def test_progress_in_a_log_is_plain_lines():
    stream = io.StringIO()
    progress = Progress("rescored", unit="rows", stream=stream, interval_s=60)
    progress.start()
    progress.set(50, 100)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 1
    assert lines[0].startswith("rescored 50/100 rows, ") and "ETA " in lines[0]


def test_backend_line_names_override_bedrock_and_config_source(tmp_path):
    config = load_config(environ={})
    env = {"HOME": str(tmp_path), "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://127.0.0.1:9", "FARM_BEDROCK__REGION": "us-east-1"}
    assert describe_backend(config, "farm.yaml", env) == (
        "backend: endpoint override http://127.0.0.1:9 (from AWS_ENDPOINT_URL_BEDROCK_RUNTIME), region us-east-1; "
        "config: farm.yaml + FARM_BEDROCK__REGION"
    )
    creds = {"HOME": str(tmp_path), "AWS_PROFILE": "research"}
    assert describe_backend(config, "farm.yaml", creds) == (
        "backend: Amazon Bedrock, region us-east-1 (credentials: AWS_PROFILE in the environment); config: farm.yaml"
    )
    rules = parse_config({"judges": [{"name": "a", "kind": "final_answer"}]})
    assert describe_backend(rules, "r.yaml", {}) == "backend: none (no Bedrock judges); config: r.yaml"


def test_python_api_warns_once_without_credentials(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith(("AWS_", "FARM_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(embedded, "_warned", set())
    config = load_config()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Ensemble.from_config(config)  # the ensemble layer chooses no backend: its callers do (review finding 13)
    with pytest.warns(RuntimeWarning, match="^farm: no AWS credentials found and no Bedrock endpoint set: every Bedrock judge will fail"):
        embedded.prepare_backend(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedded.prepare_backend(config)  # once per process


def test_preference_rationale_says_who_won_how_often_and_in_which_order():
    won = _Comparison(outcome=1.0, rationale="A is right")
    flipped = _Comparison(outcome=0.5, inconsistent=True, rationale="B is shorter")
    lost_as_b = _Comparison(outcome=1.0, rationale="A checks its work")  # the other response was A and won
    text = _rationale([(1.0, won, True), (0.5, flipped, True), (0.0, lost_as_b, False)], against_reference=False)
    assert text == (
        "won 1, tied 1, lost 1 of 3 comparisons with the other responses to this prompt, each judged in both orders; "
        "1 verdict(s) changed when the order was swapped, counted as ties. Judge: (this response shown as A) A is right | "
        "(this response shown as A) B is shorter | (the other response shown as A) A checks its work"
    )
    assert _rationale([(0.0, _Comparison(outcome=0.0), True)], against_reference=True) == (
        "lost to the reference, each judged in both orders."
    )


def test_report_has_no_fake_cost_and_no_python_dicts():
    judge = {
        "model": "amazon.nova-lite-v1:0",
        "scored": 9,
        "mean_score": 0.5,
        "status": {"ok": 9, "failed": 1},
        "failures_by_reason": {"throttled": 1},
        "histogram": [1] * 20,
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_usd": None,
        "against_label": {"n": 10, "accuracy": 0.9, "auc": 0.95},
    }
    summary = {
        "rows": 10,
        "invalid_rows": 0,
        "status": {"ok": 9, "partial": 1},
        "mean_reward": 0.5,
        "reward_histogram": [1] * 20,
        "flags": {},
        "disagreement_rate": 0.0,
        "judges": {"rubric": judge},
        "agreement_pearson": {"rubric": {"rubric": 1.0}},
        "ensemble_against_label": {"n": 10, "accuracy": 0.9, "auc": None},
        "total_cost_usd": None,
    }
    page = render_html(summary, "t")
    assert "$0.0000" not in page and "{" not in page.split("<body>")[1].split("<svg")[0]
    assert "no cost estimate (no `prices` configured for these models)" in page
    assert "ok 9, partial 1" in page and "accuracy 0.900, AUC 0.950 (n 10)" in page and "no price configured" in page


def test_probe_and_calibrate_tables_print_figures_not_python_dicts():
    from farm.analysis.fitting import FitReport, format_fit
    from farm.analysis.probes import ProbeReport, format_table

    fit = FitReport(source="labels", rows=10, ensemble_before={"accuracy": 0.9, "ece": 0.12}, ensemble_after={"accuracy": 0.9, "ece": None})
    probe = ProbeReport(rollouts=10, position_inconsistency={"preference": 0.25}, length_slope={"rubric": 0.16, "preference": None})
    fit_text, probe_text = format_fit(fit), format_table(probe)
    assert "ensemble before: accuracy 0.900, ece 0.120" in fit_text and "ensemble after:  accuracy 0.900, ece n/a" in fit_text
    assert "order-dependent comparisons): preference 0.250" in probe_text
    assert "within a label): rubric 0.160, preference n/a" in probe_text
    assert "{" not in fit_text and "{" not in probe_text
