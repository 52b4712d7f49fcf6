"""The Replay directory: files with an X-header envelope (X-Sender / X-Receiver), resubmitted as exported."""
