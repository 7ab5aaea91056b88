"""agent.sheets (see DESIGN.md)."""
