"""The loop both clocks share (`loop.Driver`), the ports it reaches state through (`ports`), and their two
implementations: in memory (`memory`, the simulation) and over the SQLite store (`sqlite`, the daemon)."""
