"""The Outlook add-in: its task pane (static files served by Slotwise) and the `/addin/api/*` backend."""
