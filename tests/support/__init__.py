"""Helpers shared by test suites (fault injection and the like)."""
