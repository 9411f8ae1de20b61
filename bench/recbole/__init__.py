"""Our training loops timed beside RecBole's on the same split (RecBole in its own virtualenv)."""
