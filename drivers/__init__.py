"""Drivers: one module per transport or protocol. Codecs are pure; transports move bytes."""
