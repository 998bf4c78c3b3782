"""api: the HTTP door. Anthropic Messages and OpenAI chat completions over HTTP, for a
tenant's API key; behind it, the gateway over the bus like any client."""
