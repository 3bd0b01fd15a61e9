"""Deployment files; ``deploy.kafka.localkafka`` is importable for the tests and the benchmark."""
