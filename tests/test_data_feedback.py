"""Feedback -> preference pairs: pairwise passes through, ratings binarized by rule, rewrites preferred."""

import pytest

from replica.config import FeedbackConfig
from replica.data.feedback import pair_rows, rating_rows, rewrite_rows
from replica.data.records import PreferencePair, Rating, Rewrite


def _rating(rid, prompt, response, **scores):
    return Rating.model_validate(
        {"id": rid, "contributor_id": "alice", "prompt": prompt, "response": response, **scores}
    )


def test_pairwise_records_pass_through():
    pair = PreferencePair.model_validate(
        {
            "id": "p1",
            "contributor_id": "alice",
            "task_id": "t1",
            "prompt": "q?",
            "chosen": "good",
            "rejected": "bad",
        }
    )
    (row,) = pair_rows([pair])
    assert row["chosen"] == [{"role": "assistant", "content": "good"}]
    assert row["rejected"] == [{"role": "assistant", "content": "bad"}]
    assert (
        row["prompt"] == [{"role": "user", "content": "q?"}]
        and row["source"] == "pairwise"
        and row["task_id"] == "t1"
    )


def test_rewrite_is_chosen_over_the_original():
    rewrite = Rewrite.model_validate(
        {
            "id": "w1",
            "contributor_id": "alice",
            "prompt": "Cancel O-7.",
            "original": "Done.",
            "rewritten": "Cancelled O-7; refund issued.",
        }
    )
    (row,) = rewrite_rows([rewrite])
    assert row["chosen"][0]["content"] == "Cancelled O-7; refund issued."
    assert row["rejected"][0]["content"] == "Done."
    assert row["source"] == "rewrite" and row["task_id"] == ""


RATINGS = [
    # prompt A: 5 (mean of aspects), 3.5, 1 -> a clear best and worst
    _rating("a1", "A?", "best", aspects={"helpfulness": 5, "honesty": 5}),
    _rating("a2", "A?", "middle", aspects={"helpfulness": 3, "honesty": 4}),
    _rating("a3", "A?", "worst", score=1),
    # prompt B: a tie
    _rating("b1", "B?", "one", score=4),
    _rating("b2", "B?", "two", score=4),
    # prompt C: a single response
    _rating("c1", "C?", "alone", score=5),
    # prompt D: best is below min_chosen_score
    _rating("d1", "D?", "meh", score=3),
    _rating("d2", "D?", "bad", score=1),
    # prompt E: margin below min_margin
    _rating("e1", "E?", "good", score=4.5),
    _rating("e2", "E?", "almost", score=4),
]


def test_ratings_best_vs_worst_binarize_on_the_mean_and_count_drops():
    rows, dropped = rating_rows(RATINGS, FeedbackConfig())
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == [("best", "worst")]
    assert rows[0]["source"] == "rating" and rows[0]["id"] == "a1>a3"
    assert dropped == {"chosen_below_min": 1, "margin_below_min": 1, "single_response": 1, "tie": 1}


def test_ratings_all_pairs_and_thresholds():
    rows, dropped = rating_rows(RATINGS, FeedbackConfig(strategy="all_pairs"))
    pairs = {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows}
    # 5 vs 3.5 and 5 vs 1 qualify; 3.5 vs 1 is dropped (3.5 < min_chosen_score 4).
    assert pairs == {("best", "middle"), ("best", "worst")}
    assert dropped["chosen_below_min"] == 2 and dropped["tie"] == 1
    looser, _ = rating_rows(RATINGS, FeedbackConfig(strategy="all_pairs", min_chosen_score=3, min_margin=0.5))
    assert ("good", "almost") in {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in looser}


def test_ratings_best_vs_random_is_seeded_and_respects_the_margin():
    many = [_rating(f"x{i}", "X?", f"r{i}", score=s) for i, s in enumerate([5, 3, 2, 1, 4.5])]
    config = FeedbackConfig(strategy="best_vs_random")
    picks = {rating_rows(many, config, seed=s)[0][0]["rejected"][0]["content"] for s in range(20)}
    assert picks <= {"r1", "r2", "r3"} and len(picks) > 1  # never r4 (4.5: margin 0.5 < 1)
    assert rating_rows(many, config, seed=3) == rating_rows(many, config, seed=3)


def test_ratings_of_different_contributors_are_never_paired():
    other = Rating.model_validate(
        {"id": "z", "contributor_id": "bob", "prompt": "A?", "response": "bob's", "score": 1}
    )
    rows, dropped = rating_rows([RATINGS[0], other], FeedbackConfig())
    assert rows == [] and dropped == {"single_response": 2}


@pytest.mark.parametrize("strategy", ["best_vs_worst", "best_vs_random", "all_pairs"])
def test_rating_pairs_keep_tool_calls_exactly(strategy):
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_order", "arguments": {"order_id": "O-1"}},
    }
    good = _rating("g", "Find O-1", [{"role": "assistant", "content": "", "tool_calls": [call]}], score=5)
    bad = _rating("b", "Find O-1", "I can't.", score=1)
    (row,) = rating_rows([good, bad], FeedbackConfig(strategy=strategy))[0]
    assert row["chosen"][0]["tool_calls"] == [call]
