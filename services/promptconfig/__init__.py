"""promptconfig: the tenant registry and per-tenant configuration, in a JetStream KV bucket."""
