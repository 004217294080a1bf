"""Microsoft 365 through Microsoft Graph: calendar events with Teams meetings, free/busy, and sendMail."""
