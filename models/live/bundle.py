"""The versioned model bundle the trainer publishes and the refresh and score workers load.

One bundle = everything the live path needs from one training run, tied to one version:
LightGCN ego embeddings by node id (the refresh worker propagates them over the current
graph), the SR-GNN session encoder and the social model, both trained over LightGCN's
propagated embeddings so that the scorer can run them over whatever the refresh worker
published last (items and users added after training included).

On disk: ``<model_dir>/<version>.pt`` (a plain dict, loaded with ``weights_only=True``) and
``<model_dir>/LATEST`` holding the current version's file name. Both are written to a temp
file and renamed, so a reader sees the old bundle or the new one, never half of one: that
rename is the hot swap. :func:`install_bundle` puts a bundle file received as bytes (from the
models topic) into a model directory the same way.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from models.inductive import InductiveEgo
from models.social import SocialSessionRec
from models.srgnn import SRGNN

FORMAT = 1
LATEST = "LATEST"
# A version names a file: no path separators, nothing hidden, bounded.
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class BundleError(RuntimeError):
    """A model bundle that cannot be read."""


@dataclass(eq=False)
class ModelBundle:
    """One training run's weights. ``ego`` rows follow ``user_ids`` then ``item_ids``."""

    version: str
    user_ids: list[str]
    item_ids: list[str]
    ego: Tensor
    num_layers: int
    srgnn: SRGNN
    social: SocialSessionRec | None
    trained_at_ms: int
    info: dict[str, Any] = field(default_factory=dict)
    inductive: InductiveEgo | None = None  # ego rows for nodes trained after this bundle

    @property
    def dim(self) -> int:
        return int(self.ego.size(1))

    def prior_weight(self, kind: str) -> float:
        """Weight of the popularity prior for ``kind`` (next_item | social); 0 in bundles trained
        before the prior existed (:mod:`models.live.prior`)."""
        return float(self.info.get("prior_weight", {}).get(kind, 0.0))

    def transition_weight(self) -> float:
        """Weight of the next-item transition prior (:mod:`models.live.transition_prior`); 0
        in bundles trained before it existed or without it."""
        return float(self.info.get("transition_weight", {}).get("next_item", 0.0))

    def exclude_seen(self, kind: str) -> bool:
        """Whether ``kind``'s answers leave out the items of the request's session, as fitted
        (:mod:`models.live.repeats`); False in bundles trained before the fit existed."""
        return bool(self.info.get("exclude_seen", {}).get(kind, False))

    @property
    def transition_successors(self) -> int:
        """How many successors of a session's last item the transition prior reads (as fitted)."""
        return int(self.info.get("transition_successors", 0)) if self.transition_weight() else 0

    def ego_of(self, node_type: str) -> dict[str, int]:
        """``id -> row of ego`` for one node type."""
        if node_type == "user":
            return {u: i for i, u in enumerate(self.user_ids)}
        offset = len(self.user_ids)
        return {it: offset + i for i, it in enumerate(self.item_ids)}

    def __repr__(self) -> str:
        return (f"ModelBundle(version={self.version!r}, users={len(self.user_ids)}, items={len(self.item_ids)}, "
                f"dim={self.dim}, layers={self.num_layers}, social={self.social is not None})")


def make_bundle_version(ego: Tensor, trained_at_ms: int) -> str:
    """``live-<event time ms>-<hash>``: sortable by the data it saw, unique per weights."""
    digest = hashlib.sha1(ego.detach().contiguous().numpy().tobytes()).hexdigest()[:8]
    return f"live-{trained_at_ms}-{digest}"


def _payload(bundle: ModelBundle) -> dict[str, Any]:
    social = None if bundle.social is None else {"hparams": bundle.social.hparams(),
                                                 "state_dict": bundle.social.state_dict()}
    return {"format": FORMAT, "version": bundle.version, "user_ids": list(bundle.user_ids),
            "item_ids": list(bundle.item_ids), "ego": bundle.ego.detach().clone(), "num_layers": bundle.num_layers,
            "srgnn": {"hparams": bundle.srgnn.hparams(), "state_dict": bundle.srgnn.state_dict()},
            "social": social, "trained_at_ms": bundle.trained_at_ms, "info": dict(bundle.info),
            "inductive": None if bundle.inductive is None else {"hparams": bundle.inductive.hparams(),
                                                                 "state_dict": bundle.inductive.state_dict()}}


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)


def publish(bundle: ModelBundle, model_dir: Path) -> Path:
    """Write the bundle, then point ``LATEST`` at it (the swap readers observe)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / f"{bundle.version}.pt"
    _atomic_write(path, lambda tmp: torch.save(_payload(bundle), tmp))
    _atomic_write(model_dir / LATEST, lambda tmp: tmp.write_text(path.name + "\n"))
    return path


def bundle_path(model_dir: Path, version: str) -> Path:
    """``<model_dir>/<version>.pt``; BundleError for a version that cannot be a file name."""
    if not isinstance(version, str) or not _VERSION_NAME.match(version):
        raise BundleError(f"model version {version!r} is not a plain file name (letters, digits, '.', '_', '-')")
    return model_dir / f"{version}.pt"


def install_bundle(version: str, data: bytes, model_dir: Path) -> Path:
    """Write a bundle file received as bytes (``<version>.pt``, as :func:`publish` wrote it
    elsewhere), then point ``LATEST`` at it. The bytes are not parsed here: readers load them
    with :func:`load_bundle`, which reports a bad file as BundleError."""
    path = bundle_path(model_dir, version)
    model_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda tmp: tmp.write_bytes(data))
    _atomic_write(model_dir / LATEST, lambda tmp: tmp.write_text(path.name + "\n"))
    return path


def latest_version(model_dir: Path) -> str | None:
    """The current bundle's version, or None if nothing was published yet."""
    try:
        name = (model_dir / LATEST).read_text().strip()
    except FileNotFoundError:
        return None
    return name[:-3] if name.endswith(".pt") else name


def load_bundle(model_dir: Path, version: str | None = None) -> ModelBundle:
    """Load ``version`` (default: the one ``LATEST`` names)."""
    version = version or latest_version(model_dir)
    if version is None:
        raise BundleError(f"no model published in {model_dir} yet; start `gnnrec worker train` (or wait for "
                          "its first run)")
    path = model_dir / f"{version}.pt"
    try:
        p = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise BundleError(f"model bundle {path} is not readable ({exc}); the trainer re-publishes on its next run") from exc
    if not isinstance(p, dict) or p.get("format") != FORMAT:
        raise BundleError(f"{path} is not a gnnrec live model bundle (format {FORMAT})")
    srgnn = SRGNN(**p["srgnn"]["hparams"])
    srgnn.load_state_dict(p["srgnn"]["state_dict"])
    srgnn.eval()
    social = None
    if p["social"] is not None:
        social = SocialSessionRec(**p["social"]["hparams"])
        social.load_state_dict(p["social"]["state_dict"])
        social.eval()
    inductive = None
    if p.get("inductive") is not None:  # bundles written before the encoder existed have none
        inductive = InductiveEgo(**p["inductive"]["hparams"])
        inductive.load_state_dict(p["inductive"]["state_dict"])
        inductive.eval()
    return ModelBundle(p["version"], list(p["user_ids"]), list(p["item_ids"]), p["ego"], int(p["num_layers"]),
                       srgnn, social, int(p["trained_at_ms"]), dict(p["info"]), inductive)
