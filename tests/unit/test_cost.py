"""Prices, inference-profile ids, quota lookup and quota-sized concurrency: config and farm.cost."""

import pytest

from farm.bedrock import CACHE_POINT, ConverseRequest
from farm.config import BedrockConfig, QuotaConfig, base_model_id, load_config, parse_config
from farm.cost import LIST_PRICES, PriceTable, Usage
from farm.errors import ConfigError

RUBRIC = {"name": "r", "kind": "rubric", "model": "us.amazon.nova-2-lite-v1:0", "criteria": [{"name": "a", "description": "d"}]}


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("us.amazon.nova-2-lite-v1:0", "amazon.nova-2-lite-v1:0"),
        ("global.amazon.nova-2-lite-v1:0", "amazon.nova-2-lite-v1:0"),
        ("eu.amazon.nova-micro-v1:0", "amazon.nova-micro-v1:0"),
        ("apac.amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0"),
        ("amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0"),
        ("us.", "us."),
    ],
)
def test_profile_ids_map_to_their_base_model(model, base):
    assert base_model_id(model) == base


def test_quota_lookup_understands_profiles_and_prefers_the_exact_id():
    config = parse_config(
        {
            "judges": [RUBRIC],
            "bedrock": {
                "quotas": {
                    "amazon.nova-2-lite-v1:0": {"tpm": 1_000_000},
                    "global.amazon.nova-2-lite-v1:0": {"tpm": 2_000_000},
                    "amazon.nova-micro-v1:0@eu-west-1": {"tpm": 3_000_000},
                }
            },
        }
    )
    assert config.quota_for("us.amazon.nova-2-lite-v1:0", "us-east-1").tpm == 1_000_000
    assert config.quota_for("global.amazon.nova-2-lite-v1:0", "us-east-1").tpm == 2_000_000
    assert config.quota_for("eu.amazon.nova-micro-v1:0", "eu-west-1").tpm == 3_000_000
    assert config.quota_for("eu.amazon.nova-micro-v1:0", "us-east-1") == config.bedrock.default_quota


def test_rpm_is_optional_and_tpm_is_required():
    quota = QuotaConfig(tpm=4_000_000)
    assert quota.rpm is None and quota.effective_rpm == 40_000
    with pytest.raises(ConfigError, match=r"bedrock.quotas.m.tpm: Field required"):
        parse_config({"judges": [RUBRIC], "bedrock": {"quotas": {"m": {"rpm": 100}}}})


def test_concurrency_is_sized_from_quota_and_latency():
    two_models = BedrockConfig(quotas={"a": QuotaConfig(tpm=4_000_000, rpm=2_000), "b": QuotaConfig(tpm=4_000_000, rpm=2_000)})
    assert two_models.concurrency() == round(2 * 2_000 / 60 * 1.0 * 2.0)  # 133: was a fixed 64
    plenty = BedrockConfig(quotas={"a": QuotaConfig(tpm=40_000_000, rpm=20_000)}, expected_latency_s=0.3)
    assert plenty.concurrency() == 200  # 333 calls/s x 0.3 s x 2
    tokens_only = BedrockConfig(quotas={"a": QuotaConfig(tpm=6_000_000)})
    assert tokens_only.concurrency() == 200  # 6M tpm / ~1,000 tokens a call = 100 calls/s
    assert BedrockConfig(max_concurrency=7).concurrency() == 7
    assert BedrockConfig(quotas={"a": QuotaConfig(tpm=1_000, rpm=1)}).concurrency() == 16  # a floor


def test_packaged_default_uses_nova_2_lite_through_a_profile_with_a_price_and_quota():
    config = load_config()
    rubric = next(j for j in config.judges if j.kind == "rubric")
    assert rubric.model == "us.amazon.nova-2-lite-v1:0"
    assert config.quota_for(rubric.model, config.bedrock.region).tpm == 4_000_000
    assert PriceTable.from_config(config).price(rubric.model) == LIST_PRICES["amazon.nova-2-lite-v1:0"]


def test_cost_prices_cache_reads_below_input_and_tiers():
    table = PriceTable(
        {"amazon.nova-lite-v1:0": {"input_per_1k": 0.001, "output_per_1k": 0.004, "cache_read_per_1k": 0.00025, "flex_discount": 0.5}}
    )
    usage = Usage(input_tokens=1_000, output_tokens=500, cache_read_tokens=4_000, cache_write_tokens=0)
    cost = table.cost("us.amazon.nova-lite-v1:0", usage)
    assert cost is not None
    assert cost.usd == pytest.approx(0.001 + 0.002 + 0.001)
    assert cost.uncached_usd == pytest.approx(0.005 + 0.002)
    assert table.usd("amazon.nova-lite-v1:0", usage, "flex") == pytest.approx(0.002)
    assert table.usd("amazon.titan-text-v1", usage) is None


def test_price_units_per_million_and_validation():
    table = PriceTable({"x": {"input_per_1m": 1.0, "output_per_1m": 2.0}}, list_prices=False)
    assert table.usd("x", Usage(input_tokens=1_000_000, output_tokens=500_000, cache_write_tokens=1_000_000)) == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="input_per_1k or input_per_1m, not both"):
        parse_config({"judges": [RUBRIC], "prices": {"x": {"input_per_1k": 1, "input_per_1m": 1, "output_per_1k": 1}}})
    with pytest.raises(ConfigError, match="output_per_1k or output_per_1m is required"):
        parse_config({"judges": [RUBRIC], "prices": {"x": {"input_per_1k": 1}}})


def test_service_tier_is_validated_in_config_and_sent_as_converse_service_tier():
    with pytest.raises(ConfigError, match=r"judges\[0\].service_tier"):
        parse_config({"judges": [{**RUBRIC, "service_tier": "cheap"}]})
    assert ConverseRequest(model="m", user_text="x", service_tier="flex").to_api()["serviceTier"] == {"type": "flex"}
    assert "serviceTier" not in ConverseRequest(model="m", user_text="x").to_api()


def test_cache_point_goes_after_a_long_enough_shared_prefix_only():
    long_prefix = "rubric and reference " * 250  # ~1,300 tokens
    request = ConverseRequest(model="m", user_text="the response", user_prefix=long_prefix, system_text="sys", prompt_cache=True)
    content = request.to_api()["messages"][0]["content"]
    assert content == [{"text": long_prefix}, CACHE_POINT, {"text": "the response"}]
    assert request.token_estimate() > 1_300  # cached tokens are still reserved against tpm
    short = ConverseRequest(model="m", user_text="r", user_prefix="short", prompt_cache=True)
    assert CACHE_POINT not in short.to_api()["messages"][0]["content"]
    off = ConverseRequest(model="m", user_text="r", user_prefix=long_prefix, prompt_cache=False)
    assert CACHE_POINT not in off.to_api()["messages"][0]["content"]
    system_only = ConverseRequest(model="m", user_text="r", system_text=long_prefix, prompt_cache=True)
    assert system_only.to_api()["system"] == [{"text": long_prefix}, CACHE_POINT]


def test_serve_metrics_price_each_verdict_by_its_judges_model_and_tier():
    from deploy.metrics import FarmMetrics
    from farm.wire import RewardResult, Verdict

    raw = {"judges": [{**RUBRIC, "service_tier": "flex"}, {"name": "f", "kind": "final_answer"}]}
    price = {"input_per_1m": 1.0, "output_per_1m": 4.0, "cache_read_per_1m": 0.25, "flex_discount": 0.5}
    raw["prices"] = {"amazon.nova-2-lite-v1:0": price}
    metrics = FarmMetrics("app", parse_config(raw))
    verdict = Verdict(score=1.0, status="ok", input_tokens=1_000, output_tokens=500, cache_read_tokens=4_000)
    assert metrics.usd("r", verdict) == pytest.approx((0.001 + 0.002 + 0.001) * 0.5)
    assert metrics.usd("f", verdict) is None and FarmMetrics("app").usd("r", verdict) is None
    metrics.record([RewardResult(id="x", reward=1.0, status="ok", judges={"r": verdict, "f": Verdict(score=1.0, status="ok")})], 3.0)


def test_two_cache_points_for_the_judges_rules_and_the_question():
    rules, question = "rules " * 900, "question " * 600  # ~1,350 and ~1,350 tokens
    both = ConverseRequest(model="m", user_text="response", system_text=rules, user_prefix=question, prompt_cache=True).to_api()
    assert both["system"] == [{"text": rules}, CACHE_POINT]
    assert both["messages"][0]["content"] == [{"text": question}, CACHE_POINT, {"text": "response"}]
    short_rules = ConverseRequest(model="m", user_text="r", system_text="rules", user_prefix=question, prompt_cache=True).to_api()
    assert short_rules["system"] == [{"text": "rules"}] and CACHE_POINT in short_rules["messages"][0]["content"]
