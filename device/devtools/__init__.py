"""Developer tools, not part of the device: :mod:`.demo` (``make demo``) runs a scripted session."""
