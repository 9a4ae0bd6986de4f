"""Code every Mitwirkung service shares: contracts, messaging, persistence, HTTP plumbing."""
