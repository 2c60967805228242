"""The ``xephy-device`` command groups, one module each, imported only when their command runs.

:mod:`device.cli` owns the names and the one-line help of the groups; each module here has
``configure(parser, common)``, which adds that group's arguments (and actions) to the parser
the root created for it and sets a ``handler(args, config) -> exit code`` on every runnable
command.  ``common`` is the parent parser carrying ``--config``.

========================  ===================================================================
:mod:`.run`               ``run``: the agent until SIGINT/SIGTERM
:mod:`.keys`              ``keys init|show``: the device's key files
:mod:`.config`            ``config check|show``
:mod:`.user`              ``user …``: keypair, account, deposits, balance, signing, recharge, token
:mod:`.chat`              ``chat``: the REPL / one question over the chat socket
:mod:`.ledger`            ``ledger rebuild``: balances replayed from the relays
:mod:`.localnet`          ``localnet``: the loopback Solana JSON-RPC stand-in
:mod:`.provision`         ``provision``: an image or SD card (steps in :mod:`device.provision`)
:mod:`.doctor`            ``doctor`` (checks in :mod:`device.doctor`)
:mod:`.arguments`         argparse types and options shared by the groups
========================  ===================================================================
"""
