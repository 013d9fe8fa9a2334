"""The ledger: event records, the SQLAlchemy store and its migrations, the decision log, the generation
registry."""
