"""Outbound: what webhooks carry to prove themselves to customers' endpoints (O1-O6)."""
