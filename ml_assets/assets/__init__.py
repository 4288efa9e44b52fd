"""Software-defined assets: ingestion, features, model and predictions."""
