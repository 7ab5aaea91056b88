"""Sandbox hosts for Molecule and end-to-end tests: see ``tests.sandbox.harness``."""
