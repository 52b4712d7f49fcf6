"""Reverse DNS of the HELO name (Exchange 2003's reverse DNS lookup): ``agents.reverse_dns:ReverseDnsAgent``."""

from .agent import COUNTERS, ReverseDnsAgent, ReverseDnsConfig, check_helo

__all__ = ["COUNTERS", "ReverseDnsAgent", "ReverseDnsConfig", "check_helo"]
