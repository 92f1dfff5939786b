// Tests for TriglavConfig land with its issue.
