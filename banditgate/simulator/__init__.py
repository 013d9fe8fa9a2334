"""Synthetic payment traffic with delayed labels and drift scenarios (see the generations issue)."""
