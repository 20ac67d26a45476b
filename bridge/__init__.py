"""od-bridge: Open Dental API Events → CloudEvents on RabbitMQ, and a subscription syncer."""

__version__ = "0.1.0"
