"""agent.aws (see DESIGN.md)."""
