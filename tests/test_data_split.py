"""Splits by task: deterministic from seed and task id, never a task on both sides; leakage check."""

from datetime import datetime, timezone

from replica.config import SplitConfig
from replica.data.split import choose_heldout, heldout_count, leakage, split_pools


def _times(n):
    return {f"task-{i}": datetime(2026, 1, 1 + i, tzinfo=timezone.utc) for i in range(n)}


def test_split_is_deterministic_and_depends_on_the_seed():
    times = _times(20)
    first = choose_heldout(times, SplitConfig(heldout_fraction=0.25, seed=1))
    assert first == choose_heldout(
        dict(reversed(list(times.items()))), SplitConfig(heldout_fraction=0.25, seed=1)
    )
    assert len(first) == 5
    assert first != choose_heldout(times, SplitConfig(heldout_fraction=0.25, seed=2))


def test_adding_a_task_never_moves_another_one_into_training():
    config = SplitConfig(heldout_fraction=0.3, seed=0)
    ranked_before = choose_heldout(_times(10), config)
    ranked_after = choose_heldout(_times(11), config)
    assert len(ranked_before - ranked_after) <= 1  # only the cut point can move


def test_heldout_count_bounds():
    assert heldout_count(1, 0.5) == 0  # one task: it trains
    assert heldout_count(2, 0.01) == 1  # at least one held out
    assert heldout_count(3, 0.99) == 2  # never all
    assert heldout_count(10, 0.0) == 0


def test_time_split_holds_out_the_latest_tasks():
    times = _times(6)
    times["undated"] = None
    assert choose_heldout(times, SplitConfig(heldout_fraction=0.3, by="time")) == {"task-5", "task-4"}


def test_feedback_follows_its_demonstrated_task_and_feedback_only_prompts_split_apart():
    demo = _times(4)
    feedback = {"task-0": None, "task-1": None, "p-a": None, "p-b": None, "p-c": None}
    heldout = split_pools(demo, feedback, SplitConfig(heldout_fraction=0.5, seed=3))
    assert len(heldout & set(demo)) == 2 and len(heldout & {"p-a", "p-b", "p-c"}) == 2


def test_leakage_reports_heldout_prompts_seen_in_training():
    train = {
        "sft/train": [
            {"id": "t", "task_id": "a", "messages": [{"role": "user", "content": "Refund  O-1 please"}]}
        ]
    }
    heldout = {
        "sft/heldout": [
            {"id": "h1", "task_id": "b", "messages": [{"role": "user", "content": "refund o-1 PLEASE"}]}
        ],
        "pref/heldout": [
            {"id": "h2", "task_id": "", "prompt": [{"role": "user", "content": "Something else"}]}
        ],
    }
    assert leakage(heldout, train) == [
        {"split": "sft/heldout", "id": "h1", "task_id": "b", "text": "refund o-1 please"}
    ]
