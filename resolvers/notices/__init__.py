"""notices: government notices to citizens through the private apps they choose (SQL and logic)."""
