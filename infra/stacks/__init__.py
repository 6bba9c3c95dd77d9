"""Stacks compose constructs and do the wiring (grants, environment variables)."""
