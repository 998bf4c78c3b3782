"""What services and clients share: messages, subjects, settings, bus wiring, logging."""
