"""Records, readers, writers and manifests: what every stage reads and writes."""
