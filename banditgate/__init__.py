"""banditgate: a contextual-bandit decision service for payment processing.

Subpackages (dependencies point one way, DESIGN.md section 3):
``policies`` <- ``ledger`` <- {``pipelines``, ``monitoring``} <- ``service``.
"""

__version__ = "0.1.0"
