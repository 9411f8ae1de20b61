"""The cluster launcher refuses layouts that cannot work before it starts any Java (the cluster
itself runs in tests/integration/test_cluster.py)."""
import pytest

from stream.brokers.cluster import start_apache_cluster


@pytest.mark.parametrize("n, min_isr, problem", [
    (0, None, "at least one node"),
    (3, 4, "min_insync_replicas must be between 1 and n=3"),
    (3, 0, "min_insync_replicas must be between 1 and n=3"),
])
def test_impossible_layouts_are_refused_up_front(n, min_isr, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        start_apache_cluster(n, min_insync_replicas=min_isr, cache_dir=None)
