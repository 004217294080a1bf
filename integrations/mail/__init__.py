"""Email over SMTP, with an ICS invitation attached."""
