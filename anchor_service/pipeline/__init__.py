"""The method as a Ray program: Ray Data stages that own engines, wired in run.py."""
