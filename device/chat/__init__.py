"""Local chat: an OpenAI-compatible server on a Unix socket, bearer-token auth, and its client.

* :mod:`device.chat.server` -- :class:`~device.chat.server.ChatService` (aiohttp, metered completions)
* :mod:`device.chat.auth` -- self-contained bearer tokens signed by the user's Solana key
* :mod:`device.chat.openai` -- the OpenAI wire format (requests, chunks, errors)
* :mod:`device.chat.listener` -- binding the Unix socket with its final mode
* :mod:`device.chat.connections` -- connection cap and request-header deadline
* :mod:`device.chat.client` -- the socket's client (stdlib only), used by ``xephy-device chat`` and
  ``user token`` (:mod:`device.commands.chat`, :mod:`device.commands.user`)
"""
