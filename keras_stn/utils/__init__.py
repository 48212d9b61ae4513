"""Helpers shared by the library: argument validation, atomic files."""
