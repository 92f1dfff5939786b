// Tests for TriglavDBus land with its issue.
