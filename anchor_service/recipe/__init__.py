"""The recipes: the method run top to bottom (method.py) and an experiment over it."""
