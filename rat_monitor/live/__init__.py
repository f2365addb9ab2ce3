"""The live view in the browser: the state of every watched source (board.py) and the server (server.py)."""
