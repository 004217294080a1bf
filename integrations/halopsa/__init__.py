"""HaloPSA: tickets, appointments and ticket notes over the Halo REST API with OAuth2 client credentials."""
