"""The LLM stage: the GGUF catalog, prompts, the local engine and scorer, a remote server, and
the checked explanations users are shown."""
