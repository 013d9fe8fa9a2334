"""Retraining, off-policy evaluation reports and scheduling (see the generations issue)."""
