"""Pure math: exploration rules, reward oracles, deterministic sampling. No I/O on the request path,
and nothing here imports the rest of banditgate."""
