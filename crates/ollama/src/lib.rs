//! `vramroute-ollama`: the Ollama HTTP API, as vramroute needs it.
