"""Admin entrypoints: the tenant rollout from one reviewed YAML file (and, later, the admin REST API)."""
