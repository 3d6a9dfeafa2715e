"""Rendering for people: sample grids and files (samples.py), benchmark and eval plots (plots.py)."""
