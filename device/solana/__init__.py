"""Solana side of the agent: the ``balance-payment`` program and user authorizations.

- :mod:`device.solana.program` -- program ids, PDAs, account layouts, instruction builders and decoders,
  and the program's error table, for both deployed versions (v1 = the dsproxy program without namespaces,
  v2 = the namespace program).  Pure: solders only, no network I/O.
- :mod:`device.solana.authorization` -- the ``recover_info`` signature scheme (what the user signs, what the
  program verifies), the device's off-chain checks before it pays, and the optional device binding carried in
  ``extra_data``.  Pure.
- :mod:`device.solana.errors` -- what a JSON-RPC node answers, as settlement errors with stable codes.  Pure.
- :mod:`device.solana.client` -- the settlement client: reads, signed ``pay``, send / confirm / resume.

Facts come from ``shared/reference/xephy-protocol.md`` section 6; the unit tests pin its golden vectors.
"""
