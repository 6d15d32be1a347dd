"""`mauto serve`: the HTTP side. It hears recipients and providers (events API, one-click unsubscribe, opens,
clicks, bounces, complaints) and writes what they say into the store the daemon reads."""
