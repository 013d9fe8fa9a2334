"""Evidence sufficiency, proxy indicators and the deployment gate (see the sufficiency issue)."""
