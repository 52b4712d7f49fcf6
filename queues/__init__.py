"""Durable queues: the Submission queue, delivery queues per next hop, Unreachable and Poison."""
