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
