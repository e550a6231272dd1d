"""vla_data.common.ranges: a store's episode ends as frame ranges, the one place that arithmetic is written."""

from __future__ import annotations

from vla_data.common.ranges import (
    ends_of,
    episode_lengths,
    episode_of,
    episode_range,
    episode_ranges,
    episode_starts,
)


def test_ends_become_starts_ranges_and_the_episode_of_a_frame() -> None:
    ends = ends_of([3, 2, 4])
    assert ends.tolist() == [3, 5, 9]
    assert episode_starts(ends).tolist() == [0, 3, 5] and episode_lengths(ends).tolist() == [3, 2, 4]
    assert episode_ranges(ends) == [(0, 3), (3, 5), (5, 9)] and episode_ranges(ends, [2, 0]) == [(5, 9), (0, 3)]
    assert (episode_range(ends, 0), episode_range(ends, 1)) == ((0, 3), (3, 5))
    assert [episode_of(ends, f) for f in (0, 2, 3, 4, 5, 8)] == [0, 0, 1, 1, 2, 2]
    assert episode_starts([]).tolist() == [] and episode_ranges([]) == []
