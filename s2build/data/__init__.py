"""Reading data: one reader per format, content-defined blocks cached as shards, and the dataset with its holdout split."""
