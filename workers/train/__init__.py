"""``gnnrec worker train``: retrain the live model bundle on a schedule and publish it."""
