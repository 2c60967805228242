"""xephy-llm-device: a pay-per-token LLM appliance on the XePHY network.

The package is laid out as in ``../shared/design.md``: pure core modules
(:mod:`device.protocol`, :mod:`device.ledger`, :mod:`device.config`,
``device.solana``) at the centre, I/O at the edges, and :mod:`device.agent`
as the composition root.
"""

__version__ = "0.1.0"
