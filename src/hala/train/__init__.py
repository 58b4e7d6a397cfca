"""Supervised fine-tuning with TRL: the translator (stage 3) and the Hala models (stage 5)."""
