"""The daemon's use cases: a tick over the store (`tick`), the lock that keeps it alone (`lock`), sending the
outbox and deciding messages by hand (`outbox`), ticks on a schedule (`scheduler`)."""
