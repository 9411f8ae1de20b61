"""All Kafka client code: topics, producers, consumers and the faust application.

``topics`` names the topics, their partitioning key and the consumer timeouts every worker
shares, and creates them; ``producer`` replays event streams into Kafka (paced or flat out);
``batch_consumer`` is the consumer-group member every worker reads with, whose positions come
from the worker's own store, never from Kafka; ``chunks`` hands a fetch's record batches out
whole (the ingest hot path); ``tail`` prints a topic in readable form (``gnnrec consume``);
``faust_app`` builds the faust application each worker process runs inside; ``security`` turns
one TLS/SASL description into every client library's options. Broker processes are started by
:mod:`stream.brokers`, not here.
"""
