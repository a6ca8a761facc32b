"""Sandboxes: servers that emulate the outside systems we cannot reach from here."""
