"""The SMTP probe: what a check says and what the replies mean (a protocol without I/O),
and the two drivers that run it over sockets: asyncio for workers, blocking for the CLI."""
