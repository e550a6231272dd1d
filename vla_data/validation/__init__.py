"""Checking source episodes against the contract in ``schemas.recorder``: per episode, then across episodes."""
