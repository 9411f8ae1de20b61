"""``gnnrec worker refresh``: keep every node's embedding fresh and publish it with its version."""
