"""The running engine: per-account workers and their events, the app's sessions, the one
composition root (`engine.runtime`), and the Thunderbird native-messaging host."""
