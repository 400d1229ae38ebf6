"""The ``vehicles`` command line."""
