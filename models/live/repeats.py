"""Whether a model's answers leave out the items already in the request's session.

Streams differ here, and the difference is large. A MovieLens user rates a film once, so every
slot of a top-20 list that holds a film already in the user's history is wasted. A YooChoose
shopper clicks the same item again and again, so the session's own items are often the best
answer: on YooChoose, live HR@20 is 0.283 with them excluded and 0.571 with them kept
(docs/quality.md). No single default is right for both, so the trainer decides it per
model, on the same held-out clicks as the priors (:mod:`models.live.prior`). The prior
weights are fitted first, exactly as without this choice. Then the held-out MRR@20 at those
weights is measured twice: with the scores as they are, and with every held-out prefix's own
items excluded. The better of the two is what is served. Keeping the repeats wins ties,
because a dataset with no signal either way should not change behaviour.

The choice is made at the fitted weights, not jointly with them: a joint fit (the weight grid
run again on the masked scores) picks noisier weights from MovieLens' 122 held-out clicks and
gives live HR@20 / MRR@20 0.0808 / 0.0247 there, against 0.0866 / 0.0284 (docs/quality.md).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from torch import Tensor

from models.live.prior import mrr_at_k


def mask_seen_(scores: Tensor, seen: Sequence[Sequence[int]]) -> Tensor:
    """Set ``scores[b, c]`` to -inf for every column ``c`` in ``seen[b]``, in place, and return
    ``scores``. The fit's MRR ranks a -inf target last, so an excluded repeat counts as a miss."""
    rows = [b for b, cols in enumerate(seen) for _ in cols]
    cols = [c for cs in seen for c in cs]
    if cols:
        scores[rows, cols] = float("-inf")
    return scores


def fit_exclude_seen(scores: Tensor, seen: Sequence[Sequence[int]], targets: Tensor,
                     served: Callable[[Tensor], Tensor]) -> tuple[bool, dict[str, float]]:
    """Whether to leave the seen items out, judged at fitted weights: ``served(scores)`` gives
    the final held-out scores with the fitted priors added. ``scores`` is consumed (masked in
    place). Returns the choice and the MRR@20 of both variants (``{"keep": …, "exclude": …}``)."""
    keep = mrr_at_k(served(scores), targets)
    exclude = mrr_at_k(served(mask_seen_(scores, seen)), targets)
    return exclude > keep, {"keep": keep, "exclude": exclude}


def exclude_seen_rows(scores: np.ndarray, seen: Sequence[Sequence[str]], item_row: Mapping[str, int]) -> None:
    """Serving: ``scores [B, n]`` to -inf at the rows of each request's ``seen[b]`` item ids, in
    place (ids without a row, or beyond ``n``, are skipped)."""
    n = scores.shape[1]
    get = item_row.get
    rows: list[int] = []
    cols: list[int] = []
    for b, items in enumerate(seen):
        for item in items:
            r = get(item)
            if r is not None and r < n:
                rows.append(b)
                cols.append(r)
    if cols:
        scores[np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)] = -np.inf
