"""The `anchor-align` command line: one subcommand a file, wired in main.py."""
