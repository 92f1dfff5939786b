// Tests for TriglavNetlink land with its issue.
