"""Label-free proxy indicators of evidence sufficiency (seven categories); see :mod:`.base`."""
