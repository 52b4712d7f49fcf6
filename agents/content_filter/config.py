"""Set-ContentFilterConfig and Add-ContentFilterPhrase, as the agent's YAML `config:`.

The weights are one setting per rule (`weights: {sender_id_fail: 4, …}`), made from the rules themselves so each
carries its rule's description in `transport check-config --defaults`.
"""

from __future__ import annotations

from pydantic import Field, create_model, field_validator

from agents import AgentConfig, AntispamConfig
from transport.core.config import ByteSize

from .rules import SCORED_RULES

__all__ = ["ContentFilterConfig", "RuleWeights"]

RuleWeights: type[AgentConfig] = create_model(  # type: ignore[call-overload]
    "RuleWeights", __base__=AgentConfig, __doc__="What each rule adds to the score when it fires (0 turns it off).",
    **{r.name: (float, Field(r.default_weight, description=r.description)) for r in SCORED_RULES})

_DEFAULT_EXTENSIONS = ["exe", "scr", "pif", "com", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta",
                       "jar", "msi", "lnk", "iso", "ps1", "reg", "cpl"]


class ContentFilterConfig(AntispamConfig):
    """Set-ContentFilterConfig: thresholds, actions, bypass lists, phrases, and our rules' weights."""

    scl_delete_enabled: bool = Field(False, description="SCLDeleteEnabled: silently delete messages at or above scl_delete_threshold.")
    scl_delete_threshold: int = Field(9, ge=0, le=9, description="SCLDeleteThreshold: the SCL from which a message is deleted.")
    scl_reject_enabled: bool = Field(True, description="SCLRejectEnabled: reject messages at or above scl_reject_threshold.")
    scl_reject_threshold: int = Field(7, ge=0, le=9, description="SCLRejectThreshold: the SCL from which a message is rejected.")
    rejection_response: str = Field("Message rejected due to content restrictions",
                                    description="RejectionResponse: the text of the 550 5.7.1 reply.")
    bypassed_recipients: list[str] = Field(default_factory=list, max_length=100,
                                           description="BypassedRecipients: mail for these is not scanned (SCL -1).")
    bypassed_senders: list[str] = Field(default_factory=list, max_length=100,
                                        description="BypassedSenders: mail from these addresses is not scanned (SCL -1).")
    bypassed_sender_domains: list[str] = Field(
        default_factory=list, max_length=100,
        description="BypassedSenderDomains: mail from these domains (`*.d` adds subdomains) is not scanned (SCL -1).")
    good_phrases: list[str] = Field(default_factory=list, max_length=800,
                                    description="Add-ContentFilterPhrase -Influence GoodWord: a message with one gets SCL 0.")
    bad_phrases: list[str] = Field(default_factory=list, max_length=800,
                                   description="Add-ContentFilterPhrase -Influence BadWord: a message with one gets SCL 9.")
    max_scan_size: ByteSize = Field(11 * 1024**2, description="Larger messages are not scanned (Exchange: 11 MB).")
    many_urls_threshold: int = Field(10, ge=0, description="The many_urls rule fires above this many distinct links.")
    suspicious_attachment_extensions: list[str] = Field(
        default_factory=lambda: list(_DEFAULT_EXTENSIONS),
        description="File types (no dot) the suspicious_attachment rule fires on.")
    weights: RuleWeights = Field(default_factory=RuleWeights, description=RuleWeights.__doc__)  # type: ignore[valid-type]

    @field_validator("bypassed_recipients", "bypassed_senders", "bypassed_sender_domains")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [v.strip().lower() for v in values]

    @field_validator("suspicious_attachment_extensions")
    @classmethod
    def _extensions(cls, values: list[str]) -> list[str]:
        return [v.strip().lower().lstrip(".") for v in values]
