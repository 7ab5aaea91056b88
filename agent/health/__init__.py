"""agent.health (see DESIGN.md)."""
