"""Published-measurement validation: data (jia19.yaml), evaluation and report tables."""
