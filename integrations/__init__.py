"""Adapters to outside systems: one folder per vendor, each with client.py, wire.py, adapter.py and config.py."""
