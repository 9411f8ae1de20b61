"""The KRaft cluster id our Apache Kafka launcher formats storage with (no Java needed)."""
import base64

from stream.brokers.apache import cluster_id


def test_cluster_ids_are_uuids_that_never_start_with_a_dash() -> None:
    # One random id in 64 starts with "-" and the storage tool then reads it as an option;
    # 5,000 draws would include ~78 such ids if they were not drawn again.
    ids = [cluster_id() for _ in range(5000)]
    assert not any(i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
    for i in ids[:100]:
        assert len(i) == 22 and len(base64.urlsafe_b64decode(i + "==")) == 16
