"""Durable workflows: the transactional outbox of job steps (outbox.py) and the runner that works it off (runner.py)."""
