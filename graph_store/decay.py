r"""Exponential time decay of edge weights, as pure functions of event time.

An edge keeps ``(w, t_ref)``. Its weight read at time ``now`` is

.. math::  w(now) = w \cdot 2^{-(now - t_{ref}) / h}   \quad (now \ge t_{ref};\ \text{else } w)

and adding an increment ``inc`` observed at time ``ts`` keeps the invariant

.. math::  w(now) = \sum_i inc_i \cdot 2^{-(now - t_i)/h}

whatever the arrival order of the increments, because ``t_ref`` only moves forward
(to the newest increment) and an older increment is decayed to ``t_ref`` before it is added.
``h = math.inf`` means no decay. Time is always an argument; nothing here reads a clock.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["add_decayed", "decay", "decayed_at", "decayed_weights"]


def decay(weight: float, dt_ms: float, half_life_ms: float) -> float:
    """Return ``weight * 2**(-dt_ms / half_life_ms)``; ``dt_ms <= 0`` returns ``weight`` unchanged.

    Weights never grow when read before their reference time: a reader whose clock lags the
    newest event sees the weight as of that event.

    >>> decay(8.0, 2_000, 1_000)
    2.0
    >>> decay(8.0, 5, math.inf)
    8.0
    """
    if dt_ms <= 0 or half_life_ms == math.inf:
        return weight
    return weight * 2.0 ** (-dt_ms / half_life_ms)


def decayed_at(weight: float, t_ref: int, now_ms: int, half_life_ms: float) -> float:
    """Weight of an edge stored as ``(weight, t_ref)``, read at ``now_ms``."""
    return decay(weight, now_ms - t_ref, half_life_ms)


def decayed_weights(weight, t_ref, now_ms: int, half_life_ms: float) -> np.ndarray:
    """:func:`decayed_at` of arrays of stored ``(weight, t_ref)`` at once, float64."""
    dt = np.maximum(now_ms - np.asarray(t_ref, dtype=np.float64), 0.0)
    return np.asarray(weight, dtype=np.float64) * np.exp2(-dt / half_life_ms)


def add_decayed(
    weight: float, t_ref: int, inc: float, ts: int, half_life_ms: float
) -> tuple[float, int]:
    """Add increment ``inc`` observed at ``ts`` to a stored ``(weight, t_ref)``.

    Returns the new ``(weight, t_ref)``, with ``t_ref = max(t_ref, ts)``:

    - ``ts >= t_ref``: ``(weight * 2**(-(ts - t_ref)/h) + inc, ts)``
    - ``ts <  t_ref``: ``(weight + inc * 2**(-(t_ref - ts)/h), t_ref)``

    Merging two stored states ``a`` and ``b`` is ``add_decayed(*a, *b, h)``, so a batch can
    aggregate its increments first and merge once with the stored value.

    >>> add_decayed(4.0, 0, 1.0, 1_000, 1_000)
    (3.0, 1000)
    >>> add_decayed(3.0, 1_000, 4.0, 0, 1_000)
    (5.0, 1000)
    """
    # Inlined decay(): this runs once per event on the ingest path. For dt == 0 or an
    # infinite half-life the factor is exactly 2**-0.0 == 1.0, the same as decay().
    if ts >= t_ref:
        return weight * 2.0 ** ((t_ref - ts) / half_life_ms) + inc, ts
    return weight + inc * 2.0 ** ((ts - t_ref) / half_life_ms), t_ref
