// Tests for TriglavDataPlane land with its issue.
