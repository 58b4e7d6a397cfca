"""hala: the translate-and-tune recipe for Arabic-centric instruction and translation models."""

__version__ = "0.1.0"
