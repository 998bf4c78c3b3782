"""leakage: scans prompts, context and responses for other tenants' data and secrets."""
