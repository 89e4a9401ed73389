"""The 1-minute rollup's kernel sorts and aggregates in pieces exactly as in one piece.

Pieces only start at 200,000 readings each, so the input is 700,000 readings, with
thousands sharing a key and a time, so the general sort for equal times runs inside the
pieces too.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from iot_lake.gold.minute_runs import MINUTE_US, MinuteRuns, minute_runs, ranked, run_aggregates

READINGS = 700_000


def _inputs(seed: int) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    device_names = pa.array([f"dev-{i:05d}" for i in range(3_000)])
    metric_names = pa.array(["temperature", "humidity", "voltage"])
    keys = [
        ranked(pa.chunked_array([pa.DictionaryArray.from_arrays(indices, names)]))
        for indices, names in [
            (rng.integers(0, 3_000, READINGS, dtype=np.int32), device_names),
            (rng.integers(0, 3, READINGS, dtype=np.int32), metric_names),
        ]
    ]
    # Whole seconds over two hours: about one reading in ten shares its key and time.
    time_us = rng.integers(0, 7_200, READINGS) * 1_000_000 + 1_793_491_200_000_000
    value = rng.normal(20.0, 5.0, READINGS).round(1)
    minute = time_us // MINUTE_US
    return keys, minute - minute.min(), time_us, value


@pytest.fixture(scope="module")
def readings() -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    return _inputs(seed=3)


@pytest.fixture(scope="module")
def whole(readings) -> MinuteRuns:
    return minute_runs(*readings)


def test_sorting_in_pieces_gives_the_one_piece_order(readings, whole):
    keys, minute, time_us, value = readings
    in_pieces = minute_runs(keys, minute, time_us, value, pieces=3)
    np.testing.assert_array_equal(in_pieces.order, whole.order)
    np.testing.assert_array_equal(in_pieces.starts, whole.starts)
    np.testing.assert_array_equal(in_pieces.buckets, whole.buckets)
    same_run = np.repeat(np.arange(len(whole.starts)), whole.counts())
    same_time = np.diff(time_us[whole.order]) == 0
    assert np.any(same_time & (np.diff(same_run) == 0)), (
        "no two readings share a key and a time: the general sort was not exercised"
    )


def test_aggregating_in_groups_gives_the_one_group_result(readings, whole):
    _, _, time_us, value = readings
    groups = whole.in_groups(3)
    assert len(groups) == 3
    expected = run_aggregates(whole, time_us, value)
    actual = run_aggregates(whole, time_us, value, pieces=3)
    assert expected.keys() == actual.keys()
    for name, column in expected.items():
        np.testing.assert_array_equal(actual[name], column, err_msg=name)


def test_groups_of_runs_never_cut_a_run(whole):
    groups = whole.in_groups(3)
    assert sum(len(group.order) for group in groups) == READINGS
    boundaries = np.cumsum([len(group.order) for group in groups])[:-1]
    assert set(boundaries.tolist()) <= set(whole.starts.tolist())
    assert np.array_equal(np.concatenate([group.buckets for group in groups]), whole.buckets)
    for group in groups:
        assert group.starts[0] == 0
        assert np.all(np.diff(group.starts) > 0)
