"""`spamguard bench`: what scoring costs beside its peers, and what a first IMAP sync costs."""
