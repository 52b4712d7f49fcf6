"""The content filter's rules: each a small object with a `name`, a `description`, a `weight` and `check()`.

`check(view)` returns a short detail when the rule fires and None when it does not (a rule whose weight depends
on the message, like the Bayes classifier's, overrides `weigh`). A message's score is the sum of the weights of
the rules that fired; the phrase rules (`forces_scl`) decide the SCL outright, as Exchange's custom good and bad
words do; the `phishing` rules also make the PCL. Weights come from the agent's configuration (`weights:`, one
setting per rule in `SCORED_RULES`, described by the rule's own description); custom rules are classes named by
dotted path under `rules:`, each with its weight and its own `Options`.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol


from agents import AgentConfig, ReverseDns, Stamp

from .bayes import Classifier, tokens
from .message import MessageView, url_host


class Settings(Protocol):
    """The settings rules read (the agent's ContentFilterConfig; named here so this module needs no import of it)."""

    good_phrases: list[str]
    bad_phrases: list[str]
    many_urls_threshold: int
    suspicious_attachment_extensions: list[str]
    weights: Any  # one float per rule in SCORED_RULES, by rule name
    bayes_enabled: bool
    bayes_min_messages: int
    rules: list[Any]  # custom rules: entries with `rule` (the class), `weight` and `options`

__all__ = ["Rule", "Settings", "Site", "SCORED_RULES", "GoodPhrase", "BadPhrase", "BayesProbability", "build_rules"]


@dataclass(frozen=True, slots=True)
class Site:
    """The organisation facts some rules compare a message with."""

    server_fqdn: str
    accepted_domains: tuple[str, ...]
    classifier: Classifier | None = None  # the trained Bayes classifier, when bayes_enabled


class Rule:
    """One named test of a message. Subclasses set the class attributes and `check`; a custom rule may declare
    its own settings as `Options` (validated from its entry's `config:`, then `self.options`)."""

    name: ClassVar[str]
    description: ClassVar[str]
    default_weight: ClassVar[float] = 0.0
    forces_scl: ClassVar[int | None] = None  # set by the phrase rules: the SCL when they fire
    phishing: ClassVar[bool] = False         # the rule's weight also counts towards the PCL
    Options: ClassVar[type[AgentConfig]] = AgentConfig

    def __init__(self, weight: float, config: Settings, site: Site, options: AgentConfig | None = None) -> None:
        self.weight = weight
        self.config = config
        self.options = options if options is not None else self.Options()

    def check(self, view: MessageView) -> str | None:
        raise NotImplementedError

    def weigh(self, view: MessageView) -> tuple[float, str] | None:
        """(weight, detail) when the rule fires: its configured weight and what `check` saw."""
        detail = self.check(view)
        return None if detail is None else (self.weight, detail)


class _Phrases(Rule):
    """Whole words and phrases, case-insensitive, anywhere in the subject or the text (Add-ContentFilterPhrase)."""

    phrases: ClassVar[str]  # the config attribute holding the list

    def __init__(self, weight: float, config: Settings, site: Site) -> None:
        super().__init__(weight, config, site)
        words = [r"\s+".join(map(re.escape, p.lower().split())) for p in getattr(config, self.phrases) if p.strip()]
        # Matched against the lower-cased text, without IGNORECASE or a look-behind, so the regex engine can jump
        # to each phrase's first letters (twenty times faster on a 4 KB body); the word start is checked here.
        self.pattern = re.compile(r"(?:" + "|".join(words) + r")(?!\w)") if words else None

    def check(self, view: MessageView) -> str | None:
        if self.pattern is None:
            return None
        text, lowered = view.text, view.lowered
        for found in self.pattern.finditer(lowered):
            start, end = found.span()
            if start == 0 or not (lowered[start - 1].isalnum() or lowered[start - 1] == "_"):
                seen = text[start:end] if len(text) == len(lowered) else found.group()
                return f'"{" ".join(seen.split())}"'
        return None


class GoodPhrase(_Phrases):
    name, phrases, forces_scl = "good_phrase", "good_phrases", 0
    description = "A custom good phrase (GoodWord): SCL 0, whatever else fired; it wins over a bad phrase."


class BadPhrase(_Phrases):
    name, phrases, forces_scl = "bad_phrase", "bad_phrases", 9
    description = "A custom bad phrase (BadWord): SCL 9."


class _SenderId(Rule):
    status: ClassVar[str]

    def check(self, view: MessageView) -> str | None:
        return f"Sender ID {self.status}" if view.item.stamps.get(Stamp.SENDER_ID_RESULT) == self.status else None


class SenderIdFail(_SenderId):
    name, status, default_weight = "sender_id_fail", "Fail", 4.0
    description = "Sender ID said Fail: the From domain does not let the sending IP send for it."


class SenderIdSoftFail(_SenderId):
    name, status, default_weight = "sender_id_softfail", "SoftFail", 2.0
    description = "Sender ID said SoftFail: the From domain doubts the sending IP (~all)."


class SenderIdPass(_SenderId):
    name, status, default_weight = "sender_id_pass", "Pass", -1.0
    description = "Sender ID said Pass: the From domain authorises the sending IP (lowers the score)."


class SenderBlocked(Rule):
    name, default_weight = "sender_blocked", 4.0
    description = "The sender filter, in StampStatus mode, found a blocked sender."

    def check(self, view: MessageView) -> str | None:
        return "blocked sender (sender filter)" if view.item.stamps.get(Stamp.SENDER_BLOCKED) else None


class ReverseDnsUnverified(Rule):
    name, default_weight = "reverse_dns_unverified", 1.0
    description = "The client's reverse DNS names do not confirm its HELO name (the Received header says unverified)."

    def check(self, view: MessageView) -> str | None:
        return "HELO not confirmed by reverse DNS" \
            if view.item.stamps.get(Stamp.REVERSE_DNS) == ReverseDns.UNVERIFIED else None


class MissingDate(Rule):
    name, default_weight = "missing_date", 1.0
    description = "No Date header: real mail programs always write one."

    def check(self, view: MessageView) -> str | None:
        return None if view.item.header("Date") else "no Date header"


class MissingMessageId(Rule):
    name, default_weight = "missing_message_id", 1.0
    description = "No Message-ID from the sender (the one the hub adds to such mail, in its own domain, counts as none)."

    def __init__(self, weight: float, config: Settings, site: Site) -> None:
        super().__init__(weight, config, site)
        self.own = f"@{site.server_fqdn.lower()}>"

    def check(self, view: MessageView) -> str | None:
        mid = view.item.message_id.strip().lower()
        return "no Message-ID from the sender" if not mid or mid.endswith(self.own) else None


class ReplyToMismatch(Rule):
    name, default_weight = "reply_to_mismatch", 1.5
    description = "Reply-To sends answers to another domain than the From address's."

    def check(self, view: MessageView) -> str | None:
        reply_domain = view.reply_to_address.rpartition("@")[2]
        if reply_domain and view.sender_domain and reply_domain != view.sender_domain:
            return f"From {view.sender_domain}, Reply-To {reply_domain}"
        return None


class AllCapsSubject(Rule):
    name, default_weight = "all_caps_subject", 1.5
    description = "The subject shouts: at least 8 letters and none in lower case."

    def check(self, view: MessageView) -> str | None:
        letters = [c for c in view.subject if c.isalpha()]
        return "subject in capitals" if len(letters) >= 8 and all(c.isupper() for c in letters) else None


class HtmlOnly(Rule):
    name, default_weight = "html_only", 1.0
    description = "HTML without a plain-text alternative, as bulk senders write."

    def check(self, view: MessageView) -> str | None:
        return "HTML body, no text part" if view.has_html and not view.has_plain else None


class ManyUrls(Rule):
    name, default_weight = "many_urls", 1.5
    description = "More distinct links than `many_urls_threshold`."

    def check(self, view: MessageView) -> str | None:
        n = len(view.urls)
        return f"{n} links" if n > self.config.many_urls_threshold else None


class SuspiciousAttachment(Rule):
    name, default_weight = "suspicious_attachment", 3.0
    description = "An attachment whose file type runs code (`suspicious_attachment_extensions`)."

    def check(self, view: MessageView) -> str | None:
        bad = set(self.config.suspicious_attachment_extensions)
        hits = [n for n in view.attachments if PurePosixPath(n.lower()).suffix.lstrip(".") in bad]
        return f"attachment {hits[0]}" if hits else None


class DisplayNameImpersonation(Rule):
    name, default_weight, phishing = "display_name_impersonation", 3.0, True
    description = "The From display name names one of our accepted domains, but the address is outside them."

    def __init__(self, weight: float, config: Settings, site: Site) -> None:
        super().__init__(weight, config, site)
        self.domains = [d.lower().removeprefix("*.") for d in site.accepted_domains]

    def check(self, view: MessageView) -> str | None:
        name, domain = view.from_name.lower(), view.sender_domain
        if not name or not domain or any(domain == d or domain.endswith("." + d) for d in self.domains):
            return None
        named = next((d for d in self.domains if d in name), None)
        return f'display name says {named}, address is @{domain}' if named else None


_HOST_TEXT = re.compile(r"^(?:https?://)?((?:[a-z0-9-]+\.)+[a-z]{2,})(?:[/:?#]\S*)?$", re.IGNORECASE)


def _related(a: str, b: str) -> bool:
    return a == b or a.endswith("." + b) or b.endswith("." + a)


class LinkTextMismatch(Rule):
    name, default_weight, phishing = "link_text_mismatch", 3.0, True
    description = "A link whose visible text is a web address in another domain than the one it really opens."

    def check(self, view: MessageView) -> str | None:
        for href, text in view.links:
            shown = _HOST_TEXT.match(text)
            target = url_host(href) if href.lower().startswith(("http:", "https:")) else ""
            if shown and target and not _related(shown.group(1).lower(), target):
                return f"link shows {shown.group(1).lower()}, opens {target}"
        return None


class DnsListStamped(Rule):
    name, default_weight = "dns_block_list", 2.5
    description = ("A connection filter block list provider with `action: StampStatus` lists the client IP "
                   "(it adds weight here instead of refusing the recipients).")

    def check(self, view: MessageView) -> str | None:
        hits = view.item.stamps.get(Stamp.DNS_LIST_HITS)
        return f"listed by {', '.join(hits)}" if hits else None


class BayesProbability(Rule):
    name, default_weight = "bayes", 4.0
    description = ("The trained naive Bayes classifier (`bayes_enabled`): adds weight × (2p − 1) for its spam "
                   "probability p, so likely ham lowers the score and likely spam raises it.")

    def __init__(self, weight: float, config: Settings, site: Site, options: AgentConfig | None = None) -> None:
        super().__init__(weight, config, site, options)
        self.classifier = site.classifier
        self.minimum = config.bayes_min_messages

    def weigh(self, view: MessageView) -> tuple[float, str] | None:
        c = self.classifier
        if c is None or c.ham < self.minimum or c.spam < self.minimum:
            return None  # not trained enough to say anything
        p, clues = c.spam_probability(tokens(view))
        if not clues:
            return None
        return round(self.weight * (2 * p - 1), 2), f"spam probability {p:.2f} from {clues} tokens"


SCORED_RULES: tuple[type[Rule], ...] = (
    SenderIdFail, SenderIdSoftFail, SenderIdPass, SenderBlocked, ReverseDnsUnverified, DnsListStamped, MissingDate,
    MissingMessageId, ReplyToMismatch, AllCapsSubject, HtmlOnly, ManyUrls, SuspiciousAttachment,
    DisplayNameImpersonation, LinkTextMismatch, BayesProbability,
)
"""The weighted rules, in the order the explanation lists them."""


def build_rules(config: Settings, site: Site) -> list[Rule]:
    """The phrase rules, then every scored rule whose weight is not 0 (a weight of 0 turns a rule off; the Bayes
    rule also needs `bayes_enabled`), then the custom rules."""
    rules: list[Rule] = [GoodPhrase(0.0, config, site), BadPhrase(0.0, config, site)]
    for cls in SCORED_RULES:
        weight = getattr(config.weights, cls.name)
        if weight and (cls is not BayesProbability or config.bayes_enabled):
            rules.append(cls(weight, config, site))
    rules += [entry.rule(entry.weight, config, site, entry.options) for entry in config.rules if entry.weight]
    return rules
