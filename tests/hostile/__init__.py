"""Hostile-load suite: the real agent under floods, with the honest user's outcome measured (README.md)."""
