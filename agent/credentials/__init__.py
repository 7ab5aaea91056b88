"""agent.credentials (see DESIGN.md)."""
