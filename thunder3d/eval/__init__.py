"""Evaluation: metrics, the M2S sync-sensitivity check, comparison tables."""
