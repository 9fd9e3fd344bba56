"""isa_lib: the library behind the ISA-VAE book."""
__version__ = "0.1.0"
