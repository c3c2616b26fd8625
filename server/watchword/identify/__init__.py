"""Identify: one verifier per credential kind turns a presented credential into a Principal."""
