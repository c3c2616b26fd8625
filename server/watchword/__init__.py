"""Watchword: a gRPC policy decision point for authentication and authorization."""

__version__ = "0.1.0"
