"""Chat completions: the request as sent upstream, prompt assembly, failover, streaming and storage."""
