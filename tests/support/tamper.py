"""Wrong credentials for tests: always different from the right one, whatever it happens to end with."""


def change_last_character(secret: str) -> str:
    """`secret` with its last character replaced by a different one (a random secret may end in any)."""
    replacement = "x" if secret[-1] != "x" else "y"
    return secret[:-1] + replacement
