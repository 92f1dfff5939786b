// Tests for TriglavProtocol land with its issue.
