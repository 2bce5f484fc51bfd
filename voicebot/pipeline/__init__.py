"""The call pipeline: scheduler (call clock), playout, session (turn-taking), record."""
