"""metering: rate limits, budgets, prices and cost; state shared by replicas in JetStream KV.

Mechanism: KV compare-and-set per tenant-month. Everything a decision depends on
(spend, holds in flight, per-minute windows, alerts sent) is ONE entry in the
`tenantry-metering` bucket, key `<tenant>.<YYYY-MM>`. A replica reads it with its
revision, decides with the pure functions in `ledger`, and writes the new value
naming that revision; JetStream refuses the write if any other replica wrote in
between, and the loser re-reads and decides again. So every authorize and settle is
atomic for the tenant as a whole, whichever replica serves it and however many run:
budgets cannot be outspent by parallel requests and rate limits are not multiplied
by the replica count. Chosen over one owner per tenant (partitioned subjects)
because replicas stay interchangeable: none owns state, so scaling, crashes and
restarts need no rebalancing or hand-over. The price is write contention on a hot
tenant, softened by group commit inside each replica (`batch`).
"""
