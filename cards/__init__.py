"""Adaptive Card 1.5 builders for the Teams bot: pure `render_*(view) -> dict` functions, one module per card."""
