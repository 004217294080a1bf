"""Public booking pages and their JSON API."""
