"""The consumer: hears every expiry, claims keys once, publishes them, and does the work."""
