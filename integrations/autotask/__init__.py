"""Datto/Kaseya Autotask PSA over REST: zone discovery, a thread-limited client, wire mapping, the adapter."""
