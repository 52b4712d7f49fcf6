"""Recipient filtering (Exchange's Recipient Filter agent): ``agents.recipient_filter:RecipientFilterAgent``."""

from .agent import COUNTERS, USER_UNKNOWN, RecipientFilterAgent, RecipientFilterConfig

__all__ = ["COUNTERS", "USER_UNKNOWN", "RecipientFilterAgent", "RecipientFilterConfig"]
