"""The engine: a pure interpreter of workflows. No clock, no I/O: it takes `now` and returns effects.

`mauto simulate` drives it with a virtual clock and in-memory state; the
daemon drives it with the wall clock and the SQLite store. Same code, same
decisions.
"""
