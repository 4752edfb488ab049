"""From prediction files to a decision, torch-free: the blend methods table, F2 thresholds, decision rules and
pseudo-labels. Reads and writes run folders through :mod:`kaggle_planet.core`."""
