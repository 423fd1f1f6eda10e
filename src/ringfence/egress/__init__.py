"""The egress security proxy: every outbound connection of a session decided, limited and audited."""
