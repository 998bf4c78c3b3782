"""audit: the single ClickHouse writer (audit and cost events from JetStream) and its reader."""
