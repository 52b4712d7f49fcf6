"""An example custom content filter rule: a subject that starts with a tag bulk senders put there.

Add it to the content filter in transport.yaml; its weight counts like a built-in rule's, and it shows in the
explanation header and in `transport content-filter test` by its name:

    agents:
      - class: agents.content_filter:ContentFilterAgent
        config:
          rules:
            - class: examples.content_rules:SubjectTag
              weight: 3
              config: {tags: ["[ADV]", "[PROMO]"]}
"""

from agents import AgentConfig
from agents.content_filter import MessageView, Rule


class SubjectTag(Rule):
    name = "subject_tag"
    description = "The subject starts with a tag bulk senders use ([ADV], …)."

    class Options(AgentConfig):
        tags: list[str] = ["[ADV]"]

    def check(self, view: MessageView) -> str | None:
        subject = view.subject.lstrip().upper()
        tag = next((t for t in self.options.tags if subject.startswith(t.upper())), None)
        return f"subject starts with {tag}" if tag else None
