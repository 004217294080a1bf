"""ConnectWise PSA (Manage) REST API 3.0: tickets, notes, opportunities, activities and schedule entries."""
