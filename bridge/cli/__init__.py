"""The commands: serve, check-config, send, tail, replay, canary, asyncapi."""
