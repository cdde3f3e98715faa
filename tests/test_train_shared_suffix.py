"""dpo.trim_shared_suffix: a pair's two answers lose the tail they share, and nothing else."""

from __future__ import annotations

import pytest
from datasets import Dataset
from train_fixtures import write_config, write_prepared

from replica.config import load_config
from replica.errors import UserError
from replica.train.context import build_context
from replica.train.dpo import build_dpo_trainer
from replica.train.sft import train_sft
from replica.train.shared_suffix import shared_suffix_length, trim_shared_suffix


@pytest.mark.parametrize(
    ("chosen", "rejected", "expected"),
    [
        ([1, 2, 9, 4, 5, 0], [1, 2, 8, 4, 5, 0], 3),  # one wrong value, then the same call: cut the tail
        ([7, 5, 0], [3, 4, 6], 0),  # different answers end differently: nothing shared
        ([1, 2, 3], [2, 3], 1),  # one answer ends the other: both keep a token
        ([4, 4], [4, 4, 4], 1),
        ([5], [5], 0),
    ],
)
def test_shared_suffix_length_stops_where_the_answers_differ_and_leaves_a_token(chosen, rejected, expected):
    assert shared_suffix_length(chosen, rejected) == expected


def test_trim_keeps_prompt_and_difference_and_counts_what_it_cut():
    pairs = Dataset.from_list(
        [
            {"prompt_ids": [10, 11], "chosen_ids": [1, 2, 9, 4, 5, 0], "rejected_ids": [1, 2, 8, 4, 5, 0]},
            {"prompt_ids": [12], "chosen_ids": [7, 5, 0], "rejected_ids": [3, 4, 6]},
        ]
    )
    trimmed, stats = trim_shared_suffix(pairs)
    assert trimmed[0] == {"prompt_ids": [10, 11], "chosen_ids": [1, 2, 9], "rejected_ids": [1, 2, 8]}
    assert trimmed[1] == pairs[1]
    assert (stats.pairs, stats.trimmed, stats.tokens) == (2, 1, 6)


def test_dpo_trainer_holds_the_trimmed_pairs_and_the_manifest_counts_them(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 6, "pref": 6}})
    (tmp_path / "plain").mkdir()
    plain = load_config(write_config(tmp_path / "plain", tiny_base_dir, prepared))
    ctx = build_context(plain)
    train_sft(ctx, "alice")
    untrimmed = list(build_dpo_trainer(ctx, "alice")[0].train_dataset)

    trim = load_config(
        write_config(tmp_path / "plain", tiny_base_dir, prepared, dpo={"trim_shared_suffix": True})
    )
    trainer, record = build_dpo_trainer(build_context(trim), "alice")
    rows = list(trainer.train_dataset)
    cuts = [shared_suffix_length(row["chosen_ids"], row["rejected_ids"]) for row in untrimmed]
    assert any(cuts)  # at least the end-of-turn tokens every answer ends with
    for row, before, cut in zip(rows, untrimmed, cuts, strict=True):
        assert row["prompt_ids"] == before["prompt_ids"]
        assert row["chosen_ids"] == before["chosen_ids"][: len(before["chosen_ids"]) - cut]
        assert row["rejected_ids"] == before["rejected_ids"][: len(before["rejected_ids"]) - cut]
    assert record.counts["pref/train pairs trimmed"] == sum(1 for cut in cuts if cut)
    assert record.counts["pref/train tokens trimmed"] == 2 * sum(cuts)
    assert record.hyperparameters["dpo"]["trim_shared_suffix"] is True


def test_trim_is_refused_with_simpo(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 2, "pref": 2}})
    path = write_config(
        tmp_path, tiny_base_dir, prepared, dpo={"loss_type": "simpo", "trim_shared_suffix": True}
    )
    with pytest.raises(UserError, match="trim_shared_suffix"):
        load_config(path)
