"""llm: model calls through the anthropic SDK, or an honest offline extractive answerer."""
