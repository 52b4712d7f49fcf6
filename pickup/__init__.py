"""The Pickup directory: .eml files dropped in, claimed, checked by Exchange's rules and submitted.

Copy message files into `<data root>/pickup/` (or use `transport pickup drop FILE… --wait`): within about
poll_interval + 0.1 s each `*.eml` is claimed (renamed `.tmp`), converted by Exchange's rules (pickup.rules),
played to the SMTP receive agents as a simulated session (pickup.session; `run_receive_agents: false` gives
Exchange's behaviour, which runs none), queued in the Submission queue like SMTP mail, and deleted. A file
that cannot be submitted goes to `<data root>/badmail/<name>.bad` with `<name>.bad.txt` saying why, and a
BADMAIL tracking event (pickup.badmail). The Replay directory (package `replay`) is watched the same way.

Settings (`pickup:` and `replay:` in transport.yaml): path (empty = off), max_messages_per_minute (100,
0 = unlimited), max_header_size (64KB), max_recipients_per_message (100, Pickup only), run_receive_agents,
poll_interval.

Where this differs from Exchange: the folder is scanned every 0.25 s instead of every 5 s; receive agents
run unless turned off; a file already queued when the hub crashed is not queued again (Exchange may
duplicate it); recipients that are not SMTP addresses or that an agent refuses are failed (tracking FAIL)
with an NDR to the sender, as Exchange does; the NDR for a file moved to badmail is sent only with
`badmail_ndr: true`.
"""
