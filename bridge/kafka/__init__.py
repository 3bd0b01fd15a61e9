"""The Kafka side: the producer, the topics, batching, the fleet's memory."""
