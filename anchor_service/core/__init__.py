"""The method in plain functions over plain data. Never imports Ray (or torch)."""
