"""Myriad's simulation engine: agents hosted by the thousand on Ray actors, round by round.

A library: it runs inside Ray workers and in tests without a web server or a database.
"""
