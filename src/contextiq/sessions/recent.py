"""The newest events of recently used sessions, kept in process (seed 000 §6.1 "hot data").

A buffer answers only when it holds the contiguous tail up to the session's current sequence, as
read from the (shared) session cache, so a write made by another process makes it miss rather than
serve stale events. Bounded by the total number of events kept.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from uuid import UUID

from contextiq.sessions.models import Event


class RecentEvents:
    """Per-session ring buffers of the newest events, LRU-evicted by session."""

    def __init__(self, *, per_session: int = 1000, max_events: int = 200_000) -> None:
        self._per_session = per_session
        self._max_events = max_events
        self._total = 0
        self._buffers: OrderedDict[UUID, deque[Event]] = OrderedDict()

    def tail(self, session_id: UUID, *, last_sequence: int, count: int) -> list[Event] | None:
        """Return the newest `count` events if the buffer is complete up to `last_sequence`, else None."""
        buffer = self._buffers.get(session_id)
        if buffer is None:
            return None
        newest = buffer[-1].sequence if buffer else 0
        oldest = buffer[0].sequence if buffer else 1
        if newest != last_sequence or (len(buffer) < count and oldest != 1):
            return None
        self._buffers.move_to_end(session_id)
        if count >= len(buffer):
            return list(buffer)
        return list(buffer)[-count:]

    def fill(self, session_id: UUID, events: list[Event], *, last_sequence: int) -> None:
        """Replace a session's buffer with `events` (ascending), when they end at `last_sequence`."""
        if events and events[-1].sequence != last_sequence:
            return
        self.drop(session_id)
        buffer: deque[Event] = deque(events[-self._per_session :], maxlen=self._per_session)
        self._buffers[session_id] = buffer
        self._total += len(buffer)
        self._evict()

    def add(self, event: Event) -> None:
        """Append a just-committed event; a gap (another writer got in between) drops the buffer."""
        buffer = self._buffers.get(event.session_id)
        if buffer is None:
            if event.sequence == 1:
                self.fill(event.session_id, [event], last_sequence=1)
            return
        newest = buffer[-1].sequence if buffer else 0
        if event.sequence != newest + 1:
            self.drop(event.session_id)
            return
        if len(buffer) == buffer.maxlen:
            self._total -= 1
        buffer.append(event)
        self._total += 1
        self._buffers.move_to_end(event.session_id)
        self._evict()

    def drop(self, session_id: UUID) -> None:
        """Forget a session's buffer."""
        buffer = self._buffers.pop(session_id, None)
        if buffer is not None:
            self._total -= len(buffer)

    def _evict(self) -> None:
        while self._total > self._max_events and self._buffers:
            _, buffer = self._buffers.popitem(last=False)
            self._total -= len(buffer)
