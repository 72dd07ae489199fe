"""Python SDK for ScaiVault.

    from scaivault_sdk import SyncScaiVaultClient
    client = SyncScaiVaultClient(address="https://vault.example", token="svt_...")
    db = client.secrets.read("environments/production/billing/database")
"""

from ._version import __version__
from .client import ScaiVaultClient, SyncScaiVaultClient
from .errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ScaiVaultError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
    ValidationError,
)
from .models import Secret, SecretListItem, SecretMetadata, SecretPage
from .retry import RetryConfig

__all__ = [
    "__version__",
    "ScaiVaultClient",
    "SyncScaiVaultClient",
    "RetryConfig",
    "Secret",
    "SecretListItem",
    "SecretMetadata",
    "SecretPage",
    "ScaiVaultError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "TransportError",
    "ValidationError",
]
