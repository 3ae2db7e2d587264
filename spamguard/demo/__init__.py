"""The bundled demo mailbox (a Maildir), used when no account is configured."""
