"""The score worker's ``scored-offsets.json``: the next offset per partition it has answered,
covering only batches whose delivery the broker acknowledged."""
from __future__ import annotations

import json
import os
from pathlib import Path

from stream.kafka.batch_consumer import TP


def load_offsets(path: Path) -> dict[TP, int]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{path} is unreadable ({exc}); delete it to re-score the whole log") from exc
    return {(t, int(p)): int(o) for t, p, o in raw}


def save_offsets(path: Path, offsets: dict[TP, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(sorted([t, p, o] for (t, p), o in offsets.items())))
    os.replace(tmp, path)
