"""The web console served at ``/``: its page, assets and browser session."""
