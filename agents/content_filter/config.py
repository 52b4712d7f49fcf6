"""Set-ContentFilterConfig and Add-ContentFilterPhrase, as the agent's YAML `config:`.

The weights are one setting per rule (`weights: {sender_id_fail: 4, …}`), made from the rules themselves so each
carries its rule's description in `transport check-config --defaults`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from agents import AgentConfig, AntispamConfig
from transport.core.config import ByteSize, TransportConfig
from transport.core.errors import AgentLoadError
from transport.core.pipeline import import_object
from transport.core.scl import SclThresholds

from .rules import SCORED_RULES, Rule

__all__ = ["ContentFilterConfig", "CustomRule", "RuleWeights"]

RuleWeights: type[AgentConfig] = create_model(  # type: ignore[call-overload]
    "RuleWeights", __base__=AgentConfig, __doc__="What each rule adds to the score when it fires (0 turns it off).",
    **{r.name: (float, Field(r.default_weight, description=r.description)) for r in SCORED_RULES})

_DEFAULT_EXTENSIONS = ["exe", "scr", "pif", "com", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta",
                       "jar", "msi", "lnk", "iso", "ps1", "reg", "cpl"]


class CustomRule(AgentConfig):
    """A rule of your own: a `Rule` subclass named by dotted path, loaded like an agent."""

    cls: str = Field(alias="class", description="`package.module:Class`, a subclass of agents.content_filter.Rule.")
    weight: float = Field(description="What the rule adds to the score when it fires (0 turns it off).")
    config: dict[str, Any] = Field(default_factory=dict, description="The rule's own settings, validated by its Options model.")
    _rule: type[Rule] = PrivateAttr()
    _options: AgentConfig = PrivateAttr()

    @field_validator("cls")
    @classmethod
    def _importable(cls, spec: str) -> str:
        try:
            obj = import_object(spec) if ":" in spec else None
        except AgentLoadError as e:
            raise ValueError(str(e)) from None
        if not (isinstance(obj, type) and issubclass(obj, Rule)):
            raise ValueError(f"{spec!r} is not a content filter rule (`module:Class`, a subclass of "
                             "agents.content_filter.Rule)")
        return spec

    @model_validator(mode="after")
    def _load(self) -> "CustomRule":
        rule = import_object(self.cls)
        if rule.name in {r.name for r in SCORED_RULES} | {"good_phrase", "bad_phrase"}:
            raise ValueError(f"{self.cls}: the name {rule.name!r} is a built-in rule's")
        try:
            self._options = rule.Options.model_validate(self.config)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"config.{where}: " + ("unknown setting" if err["type"] == "extra_forbidden" else err["msg"])) from None
        self._rule = rule
        return self

    @property
    def rule(self) -> type[Rule]:
        return self._rule

    @property
    def options(self) -> AgentConfig:
        return self._options


class ContentFilterConfig(AntispamConfig):
    """Set-ContentFilterConfig: thresholds, actions, bypass lists, phrases, and our rules' weights."""

    scl_delete_enabled: bool = Field(False, description="SCLDeleteEnabled: silently delete messages at or above scl_delete_threshold.")
    scl_delete_threshold: int = Field(9, ge=0, le=9, description="SCLDeleteThreshold: the SCL from which a message is deleted.")
    scl_reject_enabled: bool = Field(True, description="SCLRejectEnabled: reject messages at or above scl_reject_threshold.")
    scl_reject_threshold: int = Field(7, ge=0, le=9, description="SCLRejectThreshold: the SCL from which a message is rejected.")
    scl_quarantine_enabled: bool = Field(
        False, description="SCLQuarantineEnabled: send messages at or above scl_quarantine_threshold to "
        "organization.quarantine_mailbox instead of their recipients.")
    scl_quarantine_threshold: int = Field(9, ge=0, le=9, description="SCLQuarantineThreshold: the SCL from which a message is quarantined.")
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
    rules: list[CustomRule] = Field(default_factory=list, description="Custom rules: `{class: module:Class, weight: 3, config: {…}}`.")
    bayes_enabled: bool = Field(False, description="Use the naive Bayes classifier trained by `transport content-filter train` as the `bayes` rule.")
    bayes_database: Path = Field(Path("content-filter/bayes.db"), description="Where the classifier's token counts are kept, relative to the data root.")
    bayes_min_messages: int = Field(
        20, ge=1, description="The `bayes` rule says nothing until the classifier has learnt at least this many ham and as many spam messages.")

    @field_validator("bypassed_recipients", "bypassed_senders", "bypassed_sender_domains")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [v.strip().lower() for v in values]

    @field_validator("suspicious_attachment_extensions")
    @classmethod
    def _extensions(cls, values: list[str]) -> list[str]:
        return [v.strip().lower().lstrip(".") for v in values]

    def thresholds(self, organization: TransportConfig) -> SclThresholds:
        """The organisation's thresholds (junk, quarantine mailbox) with this filter's delete, reject and quarantine."""
        return organization.scl_thresholds(
            delete_enabled=self.scl_delete_enabled, delete_threshold=self.scl_delete_threshold,
            reject_enabled=self.scl_reject_enabled, reject_threshold=self.scl_reject_threshold,
            quarantine_enabled=self.scl_quarantine_enabled, quarantine_threshold=self.scl_quarantine_threshold)

    @model_validator(mode="after")
    def _quarantine_needs_a_mailbox(self, info: ValidationInfo) -> "ContentFilterConfig":
        transport = (info.context or {}).get("transport")
        if self.scl_quarantine_enabled and transport is not None and not transport.organization.quarantine_mailbox:
            raise ValueError("scl_quarantine_enabled needs organization.quarantine_mailbox (the mailbox that "
                             "receives quarantined mail)")
        return self
