"""A web back end's view of gnnrec: publish a user's clicks, read back their recommendations.

Synchronous (kafka-python through stream.kafka.client), no event loop. With the system running
(`gnnrec demo`, or `gnnrec broker` plus the workers):

    python deploy/examples/sync_client.py --bootstrap-servers 127.0.0.1:9092 --user alice --items i1,i2,i3

It sends the clicks as one session, waits for the next-item recommendation that answers the
last one and prints it as one JSON object. Topic names default to the workers' defaults.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from stream.kafka.client import EventPublisher, RecommendationReader
from stream.kafka.topics import TopicSettings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--items", required=True, help="comma-separated item ids, clicked in this order")
    p.add_argument("--timeout-s", type=float, default=30.0)
    defaults = TopicSettings()
    for field in ("interactions", "follows", "next_item", "social", "dead_letters"):
        p.add_argument(f"--{field.replace('_', '-')}-topic", default=getattr(defaults, field))
    args = p.parse_args(argv)
    topics = TopicSettings(interactions=args.interactions_topic, follows=args.follows_topic,
                           next_item=args.next_item_topic, social=args.social_topic,
                           dead_letters=args.dead_letters_topic)
    items = [i for i in args.items.split(",") if i]
    session = f"{args.user}@{int(time.time())}"
    # Open the reader first, at the topics' end, so that it sees the answers to these clicks.
    with RecommendationReader(args.bootstrap_servers, topics) as reader, \
            EventPublisher(args.bootstrap_servers, topics) as events:
        last_ts = int(time.time() * 1000)
        for n, item in enumerate(items):
            last_ts = int(time.time() * 1000) + n  # strictly increasing within the session
            events.click(args.user, item, session_id=session, ts=last_ts)
        events.flush()
        rec = reader.wait_for(args.user, "next_item", newer_than_ts=last_ts, timeout_s=args.timeout_s)
    if rec is None:
        print(f"no recommendation for {args.user} within {args.timeout_s:.0f} s: is a score worker running "
              f"on {args.bootstrap_servers}?", file=sys.stderr)
        return 1
    print(json.dumps({"user": rec.user_id, "kind": rec.kind, "session": rec.session_id,
                      "answers_event_ts": rec.event_ts, "last_click_ts": last_ts,
                      "items": [i.item_id for i in rec.items], "model_version": rec.model_version,
                      "embedding_version": rec.embedding_version}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
