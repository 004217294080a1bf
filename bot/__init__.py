"""Microsoft Teams bot: the Agents SDK host, identity mapping, handlers and proactive notifications."""
