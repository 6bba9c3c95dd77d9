"""Reusable constructs. Each takes keyword-only typed arguments and exposes its resources as
attributes; grants and environment wiring happen in the stack that composes them."""
