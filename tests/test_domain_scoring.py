"""tool_call_validity by EVA's rule and by the domain's own, and the run labels in the tables."""

from __future__ import annotations

from hydralab.scoring import tool_call_validity

EXECUTOR = {"tool_not_found", "function_not_found", "execution_error", "invalid_parameter"}
EVA_RULE = EXECUTOR | {"invalid_confirmation_number_format"}  # airline's validation types
ITSM_RULE = EXECUTOR | {"invalid_building_code_format"}


def _responses(*error_types: str | None) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i, kind in enumerate(error_types):
        body: dict[str, object] = {"status": "success"}
        if kind is not None:
            body = {"status": "error", "error_type": kind, "message": "x"}
        out.append({"tool_name": f"t{i}", "tool_response": body})
    return out


def test_eva_rule_scores_and_domain_rule_is_a_sub_metric_listing_disagreements() -> None:
    # an itsm validation error is a *valid* call by EVA's rule, an invalid one by itsm's
    responses = _responses(None, "invalid_building_code_format", "not_found", "tool_not_found")
    m = tool_call_validity(responses, invalid_types=EVA_RULE, domain_invalid_types=ITSM_RULE)
    assert m["score"] == 0.75  # only tool_not_found counts under EVA's rule
    dom = m["sub_metrics"]["domain_rule"]
    assert dom["score"] == 0.5
    assert dom["details"]["invalid_tool_calls"] == 2
    assert dom["details"]["calls_the_rules_disagree_on"] == [
        {"index": 1, "tool_name": "t1", "error_type": "invalid_building_code_format"}
    ]


def test_same_rule_adds_no_domain_sub_metric() -> None:
    m = tool_call_validity(
        _responses(None, "tool_not_found"), invalid_types=EVA_RULE, domain_invalid_types=EVA_RULE
    )
    assert m["score"] == 0.5
    assert "domain_rule" not in m["sub_metrics"]


def test_no_recorded_rule_falls_back_to_the_domain_table() -> None:
    m = tool_call_validity(_responses("execution_error", None), domain="airline")
    assert m["score"] == 0.5
    assert "domain_rule" not in m["sub_metrics"]
