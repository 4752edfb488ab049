"""kaggle-planet: Kaggle image competitions from raw data to a leaderboard submission."""

__version__ = "0.1.0"
