"""Open / closed / read-only state shared by the graph store and the embedding store."""
from __future__ import annotations

from typing import Self

from graph_store.errors import ReadOnlyStoreError, StoreClosedError


class StoreLifecycle:
    """``close()`` once (then every call raises), context-manager use, and the write guard.

    Subclasses implement ``_close`` and say in ``READ_ONLY_HINT`` how to get a writable store.
    """

    READ_ONLY_HINT = "the store was opened read-only"
    _closed: bool = False
    _read_only: bool = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{type(self).__name__} is closed; open a new store object")

    def _check_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise ReadOnlyStoreError(self.READ_ONLY_HINT)
