"""Projections: list read models built by a catch-up subscription over the event store.

A projection turns the events of one kind of stream (`transaction-…`, `customer-…`) into list rows; the
owning service defines it (its fold decides what an object looks like, so no rule is written twice) and hosts
it: the runner (`runner.py`) keeps the read model (`readmodel.py`, SQLite under DATA_DIR) and its checkpoint in
the same transaction, the service answers list queries from it (`listing.py`), and `payments-ops replay`
rebuilds it from position 0 (`rebuild.py`).
"""
