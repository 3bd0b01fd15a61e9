"""The local Apache Kafka broker for development, tests and the benchmark."""
