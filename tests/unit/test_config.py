from pathlib import Path

import pytest

from farm.config import load_config, parse_config
from farm.errors import ConfigError

RULE = {"name": "answer", "kind": "final_answer"}


def test_packaged_default_loads():
    config = load_config()
    assert [j.kind for j in config.judges] == ["final_answer", "rubric", "preference"]


def test_misspelled_key_is_named_with_a_suggestion(tmp_path: Path):
    path = tmp_path / "farm.yaml"
    path.write_text(
        "judges:\n  - name: r\n    kind: rubric\n    model: amazon.nova-lite-v1:0\n    critera:\n      - {name: a, description: d}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "unknown key `critera` in judges[0]" in message
    assert "did you mean `criteria`" in message


def test_misspelled_nested_key():
    with pytest.raises(ConfigError, match=r"unknown key `rmp` in bedrock.default_quota.*did you mean `rpm`"):
        parse_config({"judges": [RULE], "bedrock": {"default_quota": {"rmp": 5, "rpm": 5, "tpm": 5}}})


def test_unknown_judge_kind_is_named():
    with pytest.raises(ConfigError) as info:
        parse_config({"judges": [{"name": "x", "kind": "vibes"}]})
    assert "judges[0].kind" in str(info.value)
    assert "'vibes'" in str(info.value)


def test_duplicate_judge_names():
    with pytest.raises(ConfigError, match="duplicate judge name 'answer'"):
        parse_config({"judges": [RULE, RULE]})


def test_quorum_larger_than_judges():
    with pytest.raises(ConfigError, match="quorum is 3"):
        parse_config({"judges": [RULE], "aggregation": {"quorum": 3}})


def test_invalid_regex_and_schema():
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        parse_config({"judges": [{"name": "r", "kind": "regex", "pattern": "(unclosed"}]})
    with pytest.raises(ConfigError, match="not a valid JSON schema"):
        parse_config({"judges": [{"name": "s", "kind": "json_schema", "schema": {"type": 12}}]})


def test_env_overrides_with_prefix(tmp_path: Path):
    path = tmp_path / "farm.yaml"
    path.write_text("judges:\n  - {name: answer, kind: final_answer}\n")
    config = load_config(path, environ={"FARM_BEDROCK__REGION": "us-west-2", "FARM_AGGREGATION__METHOD": "median", "OTHER": "1"})
    assert config.bedrock.region == "us-west-2"
    assert config.aggregation.method == "median"


def test_missing_and_bad_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("judges: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_quota_lookup_prefers_region_specific():
    config = parse_config(
        {
            "judges": [RULE],
            "bedrock": {"quotas": {"m": {"rpm": 10, "tpm": 100}, "m@eu-west-1": {"rpm": 20, "tpm": 200}}},
        }
    )
    assert config.quota_for("m", "us-east-1").rpm == 10
    assert config.quota_for("m", "eu-west-1").rpm == 20
    assert config.quota_for("other", "us-east-1") == config.bedrock.default_quota


def test_score_map_and_integrity_sections_validate_with_named_errors():
    config = parse_config(
        {
            "judges": [{"name": "a", "kind": "length", "score_map": {"a": 4.0, "b": -2.0}}],
            "integrity": {"canaries": {"rate": 0.05}, "probes": {"interval_s": 600, "probes": ["flattery"]}},
        }
    )
    assert config.judges[0].score_map.a == 4.0 and config.integrity.canaries.rate == 0.05
    with pytest.raises(ConfigError, match="gate judge cannot have a score_map"):
        parse_config({"judges": [{"name": "a", "kind": "length", "gate": True, "score_map": {"a": 1, "b": 0}}]})
    with pytest.raises(ConfigError, match=r"integrity.probes.probes.*unknown probe"):
        parse_config({"judges": [{"name": "a", "kind": "length"}], "integrity": {"probes": {"probes": ["flatery"]}}})
    with pytest.raises(ConfigError, match="unknown key `treshold` in integrity.canaries"):
        parse_config({"judges": [{"name": "a", "kind": "length"}], "integrity": {"canaries": {"treshold": 0.1}}})
