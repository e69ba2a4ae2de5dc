"""Interoperability with Protean 0.18: one event store, both directions."""
