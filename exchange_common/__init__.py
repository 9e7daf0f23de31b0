"""Code shared by every service: configuration, numbers, errors, storage, server bootstrap."""
