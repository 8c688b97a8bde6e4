"""JSON-schema judge (RLVR): 1 when the response is JSON valid against the configured schema."""

from __future__ import annotations

import json

import jsonschema

from farm.config import JsonSchemaJudgeConfig
from farm.judges.base import RuleJudge
from farm.wire import Rollout, Verdict

__all__ = ["JsonSchemaJudge"]


class JsonSchemaJudge(RuleJudge):
    def __init__(self, config: JsonSchemaJudgeConfig):
        self.name = config.name
        self.config = config
        self._validator = jsonschema.validators.validator_for(config.json_schema)(config.json_schema)

    def check(self, rollout: Rollout) -> Verdict:
        try:
            document = json.loads(rollout.response)
        except json.JSONDecodeError as exc:
            return Verdict(score=0.0, status="ok", rationale=f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(document))
        if error is not None:
            path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            return Verdict(score=0.0, status="ok", rationale=f"schema violation at {path}: {error.message}")
        return Verdict(score=1.0, status="ok", rationale="valid against the schema")
