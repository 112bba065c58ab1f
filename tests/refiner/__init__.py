"""Tests of the refiner service."""
