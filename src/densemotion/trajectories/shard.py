"""Which videos each rank of a torchrun job tracks: balanced by frame count, the same on every rank.

Largest first, each to the rank with the fewest frames so far (ties: the lower rank), so the
assignment depends only on the videos and the number of ranks, never on timing.
"""

from __future__ import annotations

from collections.abc import Mapping


def balanced_shards(frame_counts: Mapping[str, int], world_size: int) -> list[list[str]]:
    """``world_size`` lists of video names (some empty when there are more ranks than videos)."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    shards: list[list[str]] = [[] for _ in range(world_size)]
    load = [0] * world_size
    for video in sorted(frame_counts, key=lambda v: (-frame_counts[v], v)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        shards[rank].append(video)
        load[rank] += frame_counts[video]
    return shards
