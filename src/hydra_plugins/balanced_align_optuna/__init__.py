"""Hydra plugin: hydra-optuna-sweeper's search, resumable from its storage (``hparams_search``)."""
