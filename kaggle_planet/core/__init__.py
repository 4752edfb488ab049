"""What every stage shares, torch-free: the run-folder layout and prediction files (``artifacts``), what each
stage's outputs were made from (``fingerprints``), the metrics table, table-entry parameters (``params``), locks
and the one error type."""
