"""The kernel: errors, settings, the request context, PostgreSQL, the event bus, metrics,
the result cache and the domain manifest. Everything else may import it; it imports
nothing of ours, so it can never be part of an import cycle."""
