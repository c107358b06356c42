"""Writers of run data for other tools: Chrome/Perfetto trace-event JSON."""
