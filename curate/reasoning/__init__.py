"""Reasoning analysis: chain-of-thought tags and reasoning-depth features."""
