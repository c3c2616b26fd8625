"""Key hygiene (issue #15, section 5): last use and usage counts of inbound credentials (`usage`), the
published patterns of Watchword's secrets (`patterns`) and leaked-key reports from secret scanners
(`secret_scanning`)."""
