// Tests for TriglavMultipath land with its issue.
