r"""Session-based social recommendation (GraphRec / SEFrame family) on a user–item–user graph.

Three parts, each a short method:

1. **Graph encoder** (:meth:`SocialSessionRec.get_embedding`). Users and items are nodes of a
   heterogeneous graph with edge types ``user -clicks-> item``, ``item -clicked_by-> user``,
   ``item -transits_to-> item`` (consecutive clicks in training sessions) and
   ``user -followed_by-> user`` (followee → follower). ``num_layers`` layers of
   :class:`~torch_geometric.nn.HeteroConv` over one :class:`~torch_geometric.nn.GATConv` per
   edge type (sum over edge types), with a self term and a residual connection:

   .. math:: h_t^{(l+1)} = h_t^{(l)} + \mathrm{drop}\,\phi\Big(W_t h_t^{(l)} +
             \sum_{r \to t} \mathrm{GAT}_r\big(h^{(l)}_{\mathrm{src}(r)}, h_t^{(l)}\big)\Big)

   A user's output embedding is their long-term profile: the items they clicked in training
   and the users they follow.

2. **Session encoder** (:meth:`encode_session`): SR-GNN / SEFrame-style attention readout over
   the prefix's item embeddings, queried by the last item and the user,

   .. math:: \alpha_j = \mathrm{softmax}_j\, w^\top\sigma(W_1 h_{last} + W_2 h_j + W_3 u),\quad
             s = W_s[h_{last};\ \textstyle\sum_j \alpha_j h_j]

   chosen over a GRU because a Delicious "session" is the tag set of one bookmark, where tag
   order carries little signal, and because it is one vectorised pass with no recurrence
   (fast on CPU). Repeated items in a prefix count once per occurrence.

3. **Social attention** (:meth:`aggregate_friends`): attention over the user's followees
   ``F(u)``, each represented by their graph embedding, queried by the session,

   .. math:: \beta_f = \mathrm{softmax}_{f\in F(u)}\, v^\top\tanh(W_q s + W_k h_f),\quad
             c = \textstyle\sum_f \beta_f h_f

   (zero for a user with no followees). It is a softmax-weighted sum, so it does not depend
   on the order of the followees.

The fused query ``z = W_o[s; c; u]`` scores every item, ``z^\top h_i`` (or the cosine times
``score_scale`` when that is > 0, as in NISER). ``use_social=False`` is the no-social
ablation: no follow edges in the graph and no friend attention.

Batches are ragged, PyG-style: a flat item vector plus the session index of each item.

Shapes:
    - **get_embedding**: edge index dict ``{edge_type: [2, E]}`` → users ``[U, d]``, items ``[I+1, d]``
    - **score**: :class:`SessionBatch` of ``B`` sessions → ``[B, I+1]`` (column 0, padding, is ``-inf``)
    - **recommend**: → ``[B, k]`` item ids in ``1..I``
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, HeteroConv
from torch_geometric.utils import scatter, softmax

from models.losses import bce_with_logits, bpr_loss, softmax_cross_entropy

CLICKS = ("user", "clicks", "item")
CLICKED_BY = ("item", "clicked_by", "user")
TRANSITS = ("item", "transits_to", "item")
FOLLOWED_BY = ("user", "followed_by", "user")
EdgeType = tuple[str, str, str]
Loss = Literal["ce", "bpr", "bce"]


def ragged_gather(values: Tensor, starts: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenate ``values[starts[b] : starts[b] + lengths[b]]`` over ``b``; also return ``b`` per element."""
    owner = torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths)
    offsets = torch.arange(owner.numel(), device=lengths.device) - (lengths.cumsum(0) - lengths)[owner]
    return values[starts[owner] + offsets], owner


@dataclass(frozen=True)
class SessionBatch:
    """``B`` (user, session prefix) queries in ragged form.

    ``users [B]``; ``items [T]`` all prefixes concatenated; ``batch [T]`` the query each item
    belongs to; ``last [B]`` the position in ``items`` of each query's last item.
    """

    users: Tensor
    items: Tensor
    batch: Tensor
    last: Tensor

    @classmethod
    def from_ragged(cls, users: Tensor, flat_items: Tensor, starts: Tensor, lengths: Tensor) -> SessionBatch:
        if bool((lengths < 1).any()):
            raise ValueError("every session prefix needs at least one item")
        items, batch = ragged_gather(flat_items, starts, lengths)
        return cls(users=users, items=items, batch=batch, last=lengths.cumsum(0) - 1)

    @classmethod
    def from_lists(cls, users: Sequence[int], prefixes: Sequence[Sequence[int]]) -> SessionBatch:
        if len(users) != len(prefixes):
            raise ValueError(f"{len(users)} users but {len(prefixes)} session prefixes")
        lengths = torch.tensor([len(p) for p in prefixes], dtype=torch.long)
        flat = torch.tensor([i for p in prefixes for i in p], dtype=torch.long)
        return cls.from_ragged(torch.as_tensor(list(users), dtype=torch.long), flat,
                               lengths.cumsum(0) - lengths, lengths)


@dataclass(frozen=True)
class FriendIndex:
    """Followees of every user in CSR form: ``followees[ptr[u]:ptr[u+1]]``."""

    ptr: Tensor
    followees: Tensor

    @classmethod
    def from_edge_index(cls, followed_by: Tensor, n_users: int) -> FriendIndex:
        """From the ``followed_by`` edge index (row 0 followee, row 1 follower)."""
        order = torch.argsort(followed_by[1], stable=True)
        counts = torch.bincount(followed_by[1], minlength=n_users)
        ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return cls(ptr=ptr, followees=followed_by[0, order])

    @classmethod
    def empty(cls, n_users: int) -> FriendIndex:
        return cls(ptr=torch.zeros(n_users + 1, dtype=torch.long), followees=torch.zeros(0, dtype=torch.long))

    def of(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """``(followee ids [E_b], query index [E_b])`` for a batch of users."""
        return ragged_gather(self.followees, self.ptr[users], self.ptr[users + 1] - self.ptr[users])


def build_edge_index_dict(n_users: int, train_sessions: Sequence[Sequence[int]], train_users: Sequence[int],
                          social_edges: Sequence[tuple[int, int]]) -> dict[EdgeType, Tensor]:
    """The graph of the training data: distinct user–item clicks, item transitions, follows."""
    clicks = sorted({(u, i) for u, s in zip(train_users, train_sessions) for i in s})
    transits = sorted({(a, b) for s in train_sessions for a, b in zip(s, s[1:]) if a != b})
    follows = sorted(set(social_edges))
    ui = torch.tensor(clicks, dtype=torch.long).t().reshape(2, -1)
    ii = torch.tensor(transits, dtype=torch.long).t().reshape(2, -1)
    ff = torch.tensor(follows, dtype=torch.long).t().reshape(2, -1)
    if ff.numel() and int(ff.max()) >= n_users:
        raise ValueError(f"social edge mentions user {int(ff.max())} but n_users is {n_users}")
    return {CLICKS: ui, CLICKED_BY: ui.flip(0), TRANSITS: ii, FOLLOWED_BY: ff.flip(0)}


class SocialSessionRec(nn.Module):
    """Next-item recommender from the current session plus attention over followees.

    Args:
        n_users: users ``0..n_users-1``.
        n_items: items ``1..n_items`` (row 0 of the item table is padding).
        embedding_dim: ``d`` for every embedding and hidden layer.
        num_layers: heterogeneous GAT layers.
        heads: attention heads per GATConv (averaged, so the width stays ``d``).
        dropout: feature dropout on embeddings and GNN outputs; GAT attention dropout too.
        use_social: ``False`` drops follow edges and friend attention (the ablation).
        score_scale: ``0`` for dot-product scores, else cosine × this scale.
        loss: ``"ce"`` full softmax, ``"bpr"`` or ``"bce"`` with ``n_negatives`` uniform negatives.
        n_negatives: negatives per positive for ``bpr`` / ``bce``.
    """

    def __init__(self, n_users: int, n_items: int, embedding_dim: int = 64, num_layers: int = 1,
                 heads: int = 1, dropout: float = 0.2, use_social: bool = True, score_scale: float = 0.0,
                 loss: Loss = "ce", n_negatives: int = 16) -> None:
        super().__init__()
        if loss not in ("ce", "bpr", "bce"):
            raise ValueError(f"loss must be 'ce', 'bpr' or 'bce', got {loss!r}")
        if n_users < 1 or n_items < 1 or embedding_dim < 1 or num_layers < 0 or heads < 1:
            raise ValueError("n_users, n_items, embedding_dim and heads must be >= 1 and num_layers >= 0")
        if not 0.0 <= dropout < 1.0 or score_scale < 0.0 or n_negatives < 1:
            raise ValueError(f"need 0 <= dropout < 1, score_scale >= 0 and n_negatives >= 1; got {dropout}, "
                             f"{score_scale}, {n_negatives}")
        self.n_users, self.n_items, self.embedding_dim = n_users, n_items, embedding_dim
        self.num_layers, self.heads, self.dropout = num_layers, heads, dropout
        self.use_social, self.score_scale, self.loss, self.n_negatives = use_social, score_scale, loss, n_negatives
        d = embedding_dim
        self.user_emb = nn.Embedding(n_users, d)
        self.item_emb = nn.Embedding(n_items + 1, d)
        self.edge_types: list[EdgeType] = [CLICKS, CLICKED_BY, TRANSITS] + ([FOLLOWED_BY] if use_social else [])
        self.convs = nn.ModuleList(
            HeteroConv({et: GATConv((d, d), d, heads=heads, concat=False, dropout=dropout, add_self_loops=False)
                        for et in self.edge_types}, aggr="sum")
            for _ in range(num_layers))
        self.self_lins = nn.ModuleList(nn.ModuleDict({"user": nn.Linear(d, d), "item": nn.Linear(d, d)})
                                       for _ in range(num_layers))
        self.att_last, self.att_item = nn.Linear(d, d), nn.Linear(d, d, bias=False)
        self.att_user, self.att_out = nn.Linear(d, d, bias=False), nn.Linear(d, 1, bias=False)
        self.session_out = nn.Linear(2 * d, d)
        self.friend_query, self.friend_key = nn.Linear(d, d), nn.Linear(d, d, bias=False)
        self.friend_out = nn.Linear(d, 1, bias=False)
        self.fuse = nn.Linear((3 if use_social else 2) * d, d)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters") and not isinstance(module, nn.Embedding):
                module.reset_parameters()

    def hparams(self) -> dict[str, object]:
        """Constructor arguments, for :func:`models.checkpoint.save_checkpoint`."""
        return {"n_users": self.n_users, "n_items": self.n_items, "embedding_dim": self.embedding_dim,
                "num_layers": self.num_layers, "heads": self.heads, "dropout": self.dropout,
                "use_social": self.use_social, "score_scale": self.score_scale, "loss": self.loss,
                "n_negatives": self.n_negatives}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())
        return f"{self.__class__.__name__}({args})"

    def get_embedding(self, edge_index_dict: dict[EdgeType, Tensor]) -> tuple[Tensor, Tensor]:
        """Users ``[U, d]`` and items ``[I+1, d]`` after the graph layers (the refresh worker's job)."""
        h = {"user": F.dropout(self.user_emb.weight, self.dropout, self.training),
             "item": F.dropout(self.item_emb.weight, self.dropout, self.training)}
        edges = {et: edge_index_dict[et] for et in self.edge_types if et in edge_index_dict}
        for conv, lins in zip(self.convs, self.self_lins):
            msg = conv(h, edges)
            h = {t: x + F.dropout(F.elu(lins[t](x) + msg.get(t, 0.0)), self.dropout, self.training)
                 for t, x in h.items()}
        return h["user"], h["item"]

    def encode_session(self, user_h: Tensor, item_h: Tensor, batch: SessionBatch) -> Tensor:
        """Attention readout of each prefix, ``[B, d]``."""
        h = item_h[batch.items]
        h_last, u = h[batch.last], user_h[batch.users]
        query = self.att_last(h_last) + self.att_user(u)
        logits = self.att_out(torch.sigmoid(query[batch.batch] + self.att_item(h)))
        alpha = softmax(logits, batch.batch, num_nodes=batch.last.numel())
        pooled = scatter(alpha * h, batch.batch, dim=0, dim_size=batch.last.numel(), reduce="sum")
        return self.session_out(torch.cat([h_last, pooled], dim=1))

    def aggregate_friends(self, user_h: Tensor, session: Tensor, users: Tensor, friends: FriendIndex) -> Tensor:
        """Session-queried attention over each user's followees, ``[B, d]`` (zeros without followees)."""
        ids, owner = friends.of(users)
        h_f = user_h[ids]
        logits = self.friend_out(torch.tanh(self.friend_query(session)[owner] + self.friend_key(h_f)))
        beta = softmax(logits, owner, num_nodes=users.numel())
        return scatter(beta * h_f, owner, dim=0, dim_size=users.numel(), reduce="sum")

    def query(self, user_h: Tensor, item_h: Tensor, batch: SessionBatch, friends: FriendIndex | None = None) -> Tensor:
        """Fused (session, friends, user) query vectors ``[B, d]``; scores are ``query · item``
        (or cosines), so a serving index can rank items from this vector alone."""
        session = self.encode_session(user_h, item_h, batch)
        parts = [session, user_h[batch.users]]
        if self.use_social:
            if friends is None:
                raise ValueError("this model uses friends: pass a FriendIndex (FriendIndex.empty() for none)")
            parts.insert(1, self.aggregate_friends(user_h, session, batch.users, friends))
        return F.dropout(self.fuse(torch.cat(parts, dim=1)), self.dropout, self.training)

    def score(self, user_h: Tensor, item_h: Tensor, batch: SessionBatch, friends: FriendIndex | None = None) -> Tensor:
        """Scores ``[B, I+1]`` over all items from precomputed embeddings; column 0 is ``-inf``."""
        query = self.query(user_h, item_h, batch, friends)
        if self.score_scale > 0:
            scores = self.score_scale * F.normalize(query, dim=1) @ F.normalize(item_h, dim=1).t()
        else:
            scores = query @ item_h.t()
        return torch.cat([torch.full_like(scores[:, :1], float("-inf")), scores[:, 1:]], dim=1)

    def forward(self, edge_index_dict: dict[EdgeType, Tensor], batch: SessionBatch,
                friends: FriendIndex | None = None) -> Tensor:
        """Graph layers then :meth:`score`: ``[B, I+1]``."""
        user_h, item_h = self.get_embedding(edge_index_dict)
        return self.score(user_h, item_h, batch, friends)

    @torch.no_grad()
    def recommend(self, user_h: Tensor, item_h: Tensor, batch: SessionBatch, friends: FriendIndex | None = None,
                  k: int = 20) -> Tensor:
        """Top-``k`` item ids ``[B, k]`` (best first) for each (user, prefix) query."""
        if not 1 <= k <= self.n_items:
            raise ValueError(f"k must be in 1..{self.n_items}, got {k}")
        return self.score(user_h, item_h, batch, friends).topk(k, dim=1).indices

    def recommendation_loss(self, scores: Tensor, targets: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The configured loss of ``scores [B, I+1]`` against ``targets [B]`` (ids in ``1..I``)."""
        if self.loss == "ce":
            return softmax_cross_entropy(scores[:, 1:], targets - 1)
        negatives = torch.randint(1, self.n_items + 1, (targets.numel(), self.n_negatives),
                                  generator=generator, device=scores.device)
        pos = scores.gather(1, targets.view(-1, 1)).expand(-1, self.n_negatives)
        neg = scores.gather(1, negatives)
        if self.loss == "bpr":
            return bpr_loss(pos, neg)
        logits = torch.cat([pos[:, :1], neg], dim=1)
        labels = torch.cat([torch.ones_like(pos[:, :1]), torch.zeros_like(neg)], dim=1)
        return bce_with_logits(logits, labels)
