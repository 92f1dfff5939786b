// Tests for TriglavLinkEmulator land with its issue.
