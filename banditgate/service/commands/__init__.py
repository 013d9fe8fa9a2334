"""Commands of the ``banditgate`` CLI that talk to a running service over HTTP."""
