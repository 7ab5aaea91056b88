"""agent.remediator (see DESIGN.md)."""
