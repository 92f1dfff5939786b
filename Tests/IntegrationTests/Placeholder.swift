// Tests for Integration land with its issue.
