"""`farm rescore` option checks that must fail before any work starts."""

from __future__ import annotations


def test_rescore_refuses_a_batch_record_limit_under_one(tmp_path):
    """`--batch-max-records 0` divided by zero while planning jobs, after the whole collect phase."""
    from click.testing import CliRunner

    from farm.cli import main

    source = tmp_path / "rows.jsonl"
    source.write_text('{"id": "a", "prompt": "p", "response": "r"}\n')
    for option in ("--batch-max-records", "--batch-min-records"):
        args = ["rescore", str(source), "--out", str(tmp_path / "out"), "--bedrock-batch", "--batch-s3", "s3://b/p", option, "0"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and option in result.output, (option, result.output)
