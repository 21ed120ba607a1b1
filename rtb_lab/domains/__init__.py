"""One module per domain: data, prior networks, rewards and a target registry."""
