"""Issuing tokens (I1-I6): Watchword's signing keys and, later, the grants."""
