"""Hardware model: chip types, chips, directed link channels, the system graph and routing."""
