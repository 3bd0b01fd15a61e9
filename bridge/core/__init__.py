"""The domain, sans-I/O: ALM's payloads, authentication, routing, records, reasons."""
