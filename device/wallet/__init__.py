"""The user's side of the protocol, as the ``user`` and ``ledger`` commands need it (no argparse here).

* :mod:`.signing` -- a ``recover_info`` bound to one machine and amount, wrapped in a Request payload
* :mod:`.recharge` -- publish a Request like the XePHY dApp and wait for the device's answer
* :mod:`.transaction_feed` -- the device's ``Transaction`` events read back from relays
* :mod:`.relay_client` -- short-lived nostr-sdk clients (connect, insist one relay answered, release)
"""
