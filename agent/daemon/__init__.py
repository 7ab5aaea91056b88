"""agent.daemon (see DESIGN.md)."""
