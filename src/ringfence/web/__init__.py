"""The web console: server-rendered pages over the store and the session manager (ringfence.web.pages)."""
