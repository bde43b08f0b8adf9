"""Side-by-side benchmark of our signaling server and the PeerJS server.

Run ``.venv/bin/python -m bench`` (or ``bench/run``); see bench/README.md.
"""
