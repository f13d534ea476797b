"""The core of klfast: the functions, the row engine behind them, validation
and the slow twin. Nothing here is public; klfast/__init__.py exports it."""
