"""Evaluation: the LFW pairs protocol and verification metrics (cosine similarity)."""
