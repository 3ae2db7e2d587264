"""Typed errors of the SpamGuard engine; each carries a message a user can act on."""

from __future__ import annotations


class SpamGuardError(Exception):
    """Base of every error the engine raises on purpose.

    ``str(err)`` is written for the user: what went wrong and what to do.
    """


class MessageError(SpamGuardError):
    """The input could not be read as a mail message at all."""


class NotMailError(MessageError):
    """The bytes do not look like an RFC 822 message (no header block)."""


class ModelError(SpamGuardError):
    """A model directory or file is missing, corrupt or of the wrong version."""


class ConfigError(SpamGuardError):
    """The configuration file is invalid; the message names the key and line."""


class MailStoreError(SpamGuardError):
    """A mailbox (IMAP server or Maildir) failed; the message says what to do."""


class AuthError(MailStoreError):
    """The server refused the credentials."""


class CorpusError(SpamGuardError):
    """A training or evaluation corpus is missing or malformed."""


class OAuthError(AuthError):
    """OAuth2 sign-in, token storage or token refresh failed."""


class OAuthFlowError(OAuthError):
    """The browser sign-in did not complete: denied, timed out, state mismatch, code refused."""


class OAuthSignInRequired(OAuthError):
    """No usable OAuth2 tokens (missing, revoked or refused): the user must sign in again."""


class OAuthLoginRefused(OAuthError):
    """The IMAP server refused the OAuth2 access token (AUTHENTICATIONFAILED)."""


class OAuthUnavailableError(MailStoreError):
    """The provider's token endpoint could not be reached; a transient error, retry later."""


class CredentialError(MailStoreError):
    """No password could be found for an account (keyring empty, password_command failed)."""


class TLSError(MailStoreError):
    """The server's certificate could not be verified and is not pinned in the config."""

    def __init__(
        self,
        message: str,
        *,
        fingerprint: str | None = None,
        certificate: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint
        # subject, issuer, not_before, not_after of the certificate shown, when it could be read
        self.certificate = certificate


class ConnectionLostError(MailStoreError):
    """The connection to the mail server dropped or timed out; retrying later may work."""


class FolderMissingError(MailStoreError):
    """A folder the account needs (watched folder, Junk) does not exist on the server."""

    def __init__(self, message: str, *, folder: str) -> None:
        super().__init__(message)
        self.folder = folder


class JournalError(SpamGuardError):
    """The action journal and the mailbox disagree in a way SpamGuard will not guess about."""


class StateError(SpamGuardError):
    """The state database cannot be used (locked, disk full, unreadable); nothing was done."""


class StateLostError(StateError):
    """The state database exists but is empty or damaged: what SpamGuard moved and which
    messages the user rescued is gone. SpamGuard will not act on mail as if this were a
    first run (that could move rescued mail back to Junk) until the user decides."""
