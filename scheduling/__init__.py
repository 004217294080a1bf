"""Pure scheduling core: availability, slots and booking use cases; no I/O."""
