"""The agents core: plain data and pure functions, no I/O and no trio.

Events and commands with their codecs, the fold of a session's log into its
state (history per context, pending calls, pairing), the approval policy, the
modes and the tools' schemas, and the neutral model types. Everything here is
synchronous and deterministic, so it is unit-tested without a runtime and can
be reused by any store or transport; the trio runtime around it (supervisor,
session actors, turns, providers) lives in the modules of ``agents`` itself.
``tests/agents/test_core.py`` keeps it free of trio.
"""
