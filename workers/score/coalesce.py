"""Which answers of a fetched batch are superseded within it (pure; no I/O, no clock).

When the score worker is behind, a batch holds several events of one session: the answer to
every one but the last would reach a reader already outdated by the next answer of the same
batch. Only the latest event of each session gets a next-item answer, and the latest event of
each user (interaction or follow) a social one. Every event is still applied in order, and
each answer is computed at its own event's position: nothing from later in the batch reaches it.

"Latest" is the last in batch order. Producers key events by user (stream/kafka/producer.py),
so a user's events, and with them a session's, are in one partition, in offset order.
"""
from __future__ import annotations

from collections.abc import Sequence

from stream.events import Follow, Interaction


def superseded(events: Sequence[object]) -> tuple[set[int], set[int]]:
    """Positions in ``events`` whose next-item and whose social answer a later event of the
    same session (next-item) or of the same user (social) supersedes. Anything that is not an
    Interaction or a Follow (an invalid record) is ignored."""
    sessions: set[str] = set()
    users: set[str] = set()
    next_item: set[int] = set()
    social: set[int] = set()
    for i in range(len(events) - 1, -1, -1):
        ev = events[i]
        if type(ev) is Interaction:
            if ev.session_id in sessions:
                next_item.add(i)
            else:
                sessions.add(ev.session_id)
            user = ev.user_id
        elif type(ev) is Follow:
            user = ev.src_user
        else:
            continue
        if user in users:
            social.add(i)
        else:
            users.add(user)
    return next_item, social
