"""The receive side of a round trip: look for one message in a mailbox over IMAP or POP3,
delete it, and clean up what earlier runs left behind."""
