"""Stamp synchronization of N input streams, written once (message_filters is not installable
here, and ours counts what it drops). No rclpy import: items are opaque, stamps are int ns.

Exact mode matches equal stamps (detectors copy the image stamp). Approximate mode matches, for
the oldest pivot message (stream 0), the nearest message of every other stream within ``slop``.
Queues are bounded; whatever is dropped is counted by cause.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass
class SyncCounters:
    matched: int = 0
    dropped_unmatched: int = 0  # left behind: a partner never came
    dropped_overflow: int = 0  # queue full
    dropped_duplicate: int = 0  # the same stamp twice on one stream
    time_jumps_back: int = 0  # stamps jumped back (a looping bag): queues reset


class StampSynchronizer:
    def __init__(self, n_inputs: int, queue_size: int = 30, slop_ns: int = 0, jump_back_ns: int = 1_000_000_000):
        if n_inputs < 1 or queue_size < 1 or slop_ns < 0:
            raise ValueError("n_inputs >= 1, queue_size >= 1, slop >= 0")
        self.n = n_inputs
        self.queue_size = queue_size
        self.slop_ns = slop_ns
        self.jump_back_ns = jump_back_ns
        self.queues: list[deque[tuple[int, Any]]] = [deque() for _ in range(n_inputs)]
        # stamps each stream had matched lately: a repeat arriving after its first was matched
        # (the queue no longer holds it) is a duplicate too, not a new frame
        self.matched_recent: list[deque[int]] = [deque(maxlen=queue_size) for _ in range(n_inputs)]
        self.counters = SyncCounters()
        self.last_matched_ns: int | None = None
        self.lock = threading.Lock()

    def add(self, index: int, stamp_ns: int, item: Any) -> list[tuple[int, list[Any]]]:
        """Offer one message; returns the matched sets completed by it: (pivot stamp, items)."""
        with self.lock:
            c = self.counters
            if self.last_matched_ns is not None and stamp_ns < self.last_matched_ns - self.jump_back_ns:
                c.time_jumps_back += 1
                c.dropped_unmatched += sum(len(q) for q in self.queues)
                for q in self.queues:
                    q.clear()
                for m in self.matched_recent:
                    m.clear()
                self.last_matched_ns = None
            q = self.queues[index]
            if stamp_ns in self.matched_recent[index] or any(s == stamp_ns for s, _ in q):
                c.dropped_duplicate += 1
                return []
            q.append((stamp_ns, item))
            if len(q) > 1 and q[-2][0] > stamp_ns:  # out of order within the stream: keep sorted
                items = sorted(q, key=lambda x: x[0])
                q.clear()
                q.extend(items)
            if len(q) > self.queue_size:
                q.popleft()
                c.dropped_overflow += 1
            return self._match()

    def _match(self) -> list[tuple[int, list[Any]]]:
        out = []
        while all(self.queues):
            pivot_stamp = self.queues[0][0][0]
            chosen = []
            for q in self.queues[1:]:
                best = min(range(len(q)), key=lambda k: abs(q[k][0] - pivot_stamp))
                chosen.append(best if abs(q[best][0] - pivot_stamp) <= self.slop_ns else None)
            if all(k is not None for k in chosen):
                first = self.queues[0].popleft()
                self.matched_recent[0].append(first[0])
                items = [first[1]]
                for i, (q, k) in enumerate(zip(self.queues[1:], chosen), start=1):
                    assert k is not None
                    for _ in range(k):  # older partners can no longer match a later pivot
                        q.popleft()
                        self.counters.dropped_unmatched += 1
                    stamp, item = q.popleft()
                    self.matched_recent[i].append(stamp)
                    items.append(item)
                self.counters.matched += 1
                self.last_matched_ns = pivot_stamp
                out.append((pivot_stamp, items))
                continue
            # no match for the oldest pivot: drop whichever oldest message can no longer match
            oldest = min(range(self.n), key=lambda i: self.queues[i][0][0])
            newest_heads = max(q[0][0] for q in self.queues)
            if self.queues[oldest][0][0] < newest_heads - self.slop_ns:
                self.queues[oldest].popleft()
                self.counters.dropped_unmatched += 1
                continue
            break
        return out

    def diagnostics(self) -> dict[str, int]:
        c = self.counters
        return {"sync_matched": c.matched, "sync_dropped_unmatched": c.dropped_unmatched,
                "sync_dropped_overflow": c.dropped_overflow, "sync_dropped_duplicate": c.dropped_duplicate,
                "sync_time_jumps_back": c.time_jumps_back, "sync_pending": self.pending()}

    def pending(self) -> int:
        with self.lock:
            return sum(len(q) for q in self.queues)


class LatestBefore:
    """The camera_info for a frame, outside the exact synchronization: the one with the frame's
    stamp, else the newest not after it, else the newest received.

    Intrinsics rarely change, and a small reliable message that DDS has to resend arrives late
    (seen under load: camera_info seconds behind its images, then overwritten in the reader
    queue), which must not cost whole frames. Bounded; the oldest arrivals are forgotten first
    (stamps may jump back: a looping bag). Counted: exact, not exact, none at all.
    """

    def __init__(self, size: int = 30):
        if size < 1:
            raise ValueError("size >= 1")
        self.size = size
        self.items: list[tuple[int, Any]] = []  # in arrival order
        self.exact = self.not_exact = self.missing = 0
        self.lock = threading.Lock()

    def add(self, stamp_ns: int, item: Any) -> None:
        with self.lock:
            self.items = [x for x in self.items if x[0] != stamp_ns]  # a repeated stamp: the newer wins
            self.items.append((stamp_ns, item))
            del self.items[:-self.size]

    def get(self, stamp_ns: int) -> Any | None:
        with self.lock:
            if not self.items:
                self.missing += 1
                return None
            before = [x for x in self.items if x[0] <= stamp_ns]
            best = max(before, key=lambda x: x[0]) if before else self.items[-1]
            if best[0] == stamp_ns:
                self.exact += 1
            else:
                self.not_exact += 1
            return best[1]
