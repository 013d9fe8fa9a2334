"""banditgate: a contextual-bandit decision service for payment processing.

Subpackages (dependencies point one way, docs/architecture.md):
``policies`` <- ``ledger`` <- {``pipelines``, ``monitoring``} <- ``service``.
"""

__version__ = "0.1.0"
