"""Test suites for jada-agent."""
