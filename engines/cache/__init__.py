"""The engine cache: keys, manifests, atomic writes under a lock, and hash-checked loading."""
