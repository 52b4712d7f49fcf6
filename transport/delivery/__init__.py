"""Delivery: where a categorized message leaves the queues (mailbox now; SMTP send and drop come later)."""
