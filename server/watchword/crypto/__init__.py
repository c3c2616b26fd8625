"""Encryption at rest under the operator's master key."""
