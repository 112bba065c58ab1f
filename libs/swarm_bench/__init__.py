"""Benchmarks and stand-ins for what is outside the machine: replay instances, the quality
benchmark, the in-process stack, the OpenAI wire format and a fake Runloop API.

Nothing here is re-exported: each module is imported by name, so that the light ones (the wire
format, the server base) do not pull in the four services.
"""
