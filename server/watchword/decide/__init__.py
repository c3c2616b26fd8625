"""Deciding: the action catalogue and the scope rules S1-S8, as pure functions over plain data."""
