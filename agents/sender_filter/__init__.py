"""Sender filtering (Exchange's Sender Filter agent): ``agents.sender_filter:SenderFilterAgent``."""

from .agent import COUNTERS, SENDER_DENIED, SenderFilterAction, SenderFilterAgent, SenderFilterConfig

__all__ = ["COUNTERS", "SENDER_DENIED", "SenderFilterAction", "SenderFilterAgent", "SenderFilterConfig"]
