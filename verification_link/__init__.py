"""Hosted identity-verification links for Django (OOTO-AI, Valify, and a built-in sandbox)."""

__version__ = "0.1.0.dev0"
