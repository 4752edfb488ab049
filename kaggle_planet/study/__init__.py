"""Studying ensembles, torch-free: the leaderboard across experiments (``compare``) and the HTML report."""
