"""Sweeps: many trainings from one command (Hydra) and their report."""
