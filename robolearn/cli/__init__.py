"""Hydra entry points (console scripts). Nothing imports this package."""
