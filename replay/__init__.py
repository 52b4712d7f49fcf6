"""The Replay directory: files with an X-header envelope (X-Sender / X-Receiver), resubmitted as exported.

`transport.core.replay_format` reads and writes the format (`serialize` is what `transport message export`
writes, `parse` what the Replay directory reads, so export → replay round-trips; the Pickup directory reads a
file's leading X-headers with it too); `replay.rules` applies Exchange's rules,
including the trust decision: only files this hub wrote keep their X-MS-Exchange-Organization-* headers.
Watching, claiming, badmail and crash safety are the Pickup directory's (package `pickup`).
"""
