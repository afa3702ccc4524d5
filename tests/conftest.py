"""Shared fixtures. Real-data helpers live in tests/realdata.py."""
