"""An example custom agent: refuse listed recipients at RCPT TO, and stamp every accepted message.

Enable it in transport.yaml:

    agents:
      - class: examples.recipient_block:RecipientBlockAgent
        priority: 10
        config:
          blocked: [bob@contoso.com]
"""

from agents import AgentConfig, EndOfDataEvent, RcptToEvent, SmtpReceiveAgent, SmtpResponse


class RecipientBlockAgent(SmtpReceiveAgent):
    name = "Recipient Block Example"
    description = "Rejects listed recipients at RCPT TO; stamps X-Example-Checked on the rest."

    class Config(AgentConfig):
        blocked: list[str] = []
        reply: str = "Recipient blocked by policy"

    async def on_rcpt_to(self, event: RcptToEvent) -> None:
        if event.recipient.address.lower() in {a.lower() for a in self.config.blocked}:
            event.reject_command(SmtpResponse(550, "5.7.1", self.config.reply), reason="listed recipient")

    async def on_end_of_data(self, event: EndOfDataEvent) -> None:
        event.mail_item.append_headers([("X-Example-Checked", self.name)])
