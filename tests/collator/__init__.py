"""Collator service tests."""
