"""metering: rate limits, budgets, prices and cost; state shared by replicas in JetStream KV."""
