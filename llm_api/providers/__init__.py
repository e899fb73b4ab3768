"""Model providers: where they come from, which models they serve, and how to talk to them."""
