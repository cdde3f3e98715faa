"""End-state task checks, pass^k, Wilson intervals and BFCL-style tool-call checks, by hand-computed cases."""

import math

import pytest
from test_sandbox import LEDGER_TOOLS, LedgerEnv, call

from replica.agents.sandbox import Sandbox
from replica.errors import UserError
from replica.eval.checks import check_episode, read_check, reference_actions, replay, state_hash
from replica.eval.metrics import check_tool_calls, pass_hat_k, step_agreement, wilson_interval

REFERENCE = [
    {"role": "user", "content": "Freeze B and put 5 in A."},
    {"role": "assistant", "content": "", "tool_calls": [call("deposit", account="A", amount=5)]},
    {"role": "tool", "name": "deposit", "content": "15"},
    {"role": "assistant", "content": "", "tool_calls": [call("set_status", account="B", status="frozen")]},
    {"role": "tool", "name": "set_status", "content": "frozen"},
    {"role": "assistant", "content": "Done: A has 15, B is frozen."},
]
CHECK = read_check({"answer_contains": ["frozen", "15"], "state": {"accounts.B.status": "frozen"}})


def _end_state(actions: list[dict]) -> dict:
    sandbox = Sandbox(LedgerEnv())
    for action in actions:
        sandbox.execute(action)
    return sandbox.env.snapshot()


def test_end_state_check_accepts_another_valid_order_and_rejects_a_wrong_end_state():
    expected = replay(LedgerEnv, None, reference_actions(REFERENCE)).snapshot()
    assert expected["accounts"]["A"]["balance"] == 15
    reordered = _end_state(
        [call("set_status", account="B", status="frozen"), call("deposit", account="A", amount=5)]
    )
    verdict = check_episode(CHECK, reordered, "All done, A has 15 and B is FROZEN.", expected)
    assert verdict.reward == 1.0 and verdict.expected_hash == verdict.actual_hash

    wrong = _end_state(
        [call("set_status", account="B", status="frozen"), call("deposit", account="A", amount=6)]
    )
    verdict = check_episode(CHECK, wrong, "All done, A has 15 and B is frozen.", expected)
    assert verdict.reward == 0.0 and not verdict.state_ok and verdict.answer_ok

    nothing_done = _end_state([])
    verdict = check_episode(CHECK, nothing_done, "B is frozen, A has 15", expected)
    assert verdict.reward == 0.0 and verdict.failed_facts == ["accounts.B.status"]


def test_answer_must_hold_every_required_string():
    expected = replay(LedgerEnv, None, reference_actions(REFERENCE)).snapshot()
    verdict = check_episode(CHECK, expected, "B is frozen now.", expected)
    assert verdict.state_ok and not verdict.answer_ok and verdict.reward == 0.0
    assert verdict.missing_strings == ["15"]


def test_state_hash_ignores_key_order_and_named_paths():
    a = {"x": 1, "log": [1, 2], "y": {"b": 2, "a": 1}}
    b = {"y": {"a": 1, "b": 2}, "x": 1, "log": [3]}
    assert state_hash(a) != state_hash(b)
    assert state_hash(a, ignore=["log"]) == state_hash(b, ignore=["log"])
    # `*` matches every key at its level: per-record timestamps drop out, the rest still counts.
    c = {"t": {"1": {"s": "open", "at": 1}, "2": {"s": "done", "at": 2}}}
    d = {"t": {"1": {"s": "open", "at": 9}, "2": {"s": "done", "at": 8}}}
    assert state_hash(c, ignore=["t.*.at"]) == state_hash(d, ignore=["t.*.at"]) != state_hash(d)


def test_unknown_check_keys_are_errors_that_name_the_task():
    with pytest.raises(UserError, match="task t1 check: unknown key.*answer_contain"):
        read_check({"answer_contain": ["x"]}, where="task t1 check")
    assert read_check({"outputs": ["x"]})["answer_contains"] == ["x"]  # tau-bench's name


def test_pass_hat_k_on_a_hand_computed_example():
    trials = [(2, 4), (4, 4), (0, 4)]  # successes, trials per task
    assert pass_hat_k(trials, 1) == pytest.approx((0.5 + 1 + 0) / 3)
    # C(2,2)/C(4,2) = 1/6; C(4,2)/C(4,2) = 1; 0.
    assert pass_hat_k(trials, 2) == pytest.approx((1 / 6 + 1 + 0) / 3)
    assert pass_hat_k(trials, 4) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="at least 5 trials"):
        pass_hat_k(trials, 5)


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson_interval(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and math.isclose(high, 0.2775, abs_tol=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_bfcl_style_checks_count_each_error_category():
    reference = reference_actions(REFERENCE)
    predicted = [
        call("set_status", account="B", status="frozen"),  # correct (reordered)
        call("deposit", account="A", amount="5"),  # wrong type (string for integer)
        call("get_balance", account="A"),  # a real tool the reference never calls
        call("teleport", to="moon"),  # hallucinated
        call("set_status", account="B"),  # no reference left for set_status, missing required
    ]
    counts = check_tool_calls(predicted, reference, LEDGER_TOOLS)
    assert counts["calls"] == 5 and counts["correct"] == 1
    assert counts["wrong_type"] == 1 and counts["wrong_value"] == 1  # "5" is not 5 either
    assert counts["wrong_function"] == 2  # get_balance, second set_status
    assert counts["unknown_function"] == 1
    assert counts["missing_required"] == 1
    assert counts["missed_call"] == 0  # both reference calls were answered

    counts = check_tool_calls([call("deposit", account="A", amount=7, memo="x")], reference, LEDGER_TOOLS)
    assert counts["unexpected_argument"] == 1 and counts["wrong_value"] == 1 and counts["missed_call"] == 1
    assert counts["correct"] == 0


def test_step_agreement_is_positional_against_the_demonstration():
    reference = reference_actions(REFERENCE)
    assert step_agreement(reference, reference) == 1.0
    assert step_agreement(list(reversed(reference)), reference) == 0.0
    assert step_agreement(reference[:1], reference) == 0.5
    assert step_agreement([], []) == 1.0
