// Tests for TriglavSystemd land with its issue.
