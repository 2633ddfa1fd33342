"""Summaries, reports and figures computed from run directories alone."""
