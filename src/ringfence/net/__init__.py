"""Network primitives shared by the proxies: host:port parsing, address classification, the safe dialer, the
splice relay. Knows nothing of sessions or policy."""
