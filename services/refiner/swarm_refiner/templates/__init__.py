"""Versioned prompt templates (package so the .txt files ship in wheels as package data)."""
