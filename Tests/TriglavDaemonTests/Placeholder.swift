// Tests for TriglavDaemon land with its issue.
