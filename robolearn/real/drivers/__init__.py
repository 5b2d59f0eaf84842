"""Robot drivers: the sim twin and vendor arms/cameras (optional extras)."""
