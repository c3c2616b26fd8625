"""Seeing what Watchword does: request ids, metrics, the audit log and structured logs."""
