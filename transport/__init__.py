"""An Exchange-style mail transport pipeline: SMTP receive events, agents, durable queues, delivery."""

__version__ = "0.1.0"
