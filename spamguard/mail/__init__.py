"""Mail stores: IMAP and Maildir behind one MailStore protocol."""
