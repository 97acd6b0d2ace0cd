"""Reading data: one reader per format, per-file shards, packs, and the dataset with its holdout split."""
