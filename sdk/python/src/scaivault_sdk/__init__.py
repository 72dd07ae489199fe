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
    IdempotencyKeyReusedError,
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
from .audit import ExportFailedError
from .models import (
    AuditLogs,
    AuditRecord,
    ExportJob,
    FileDestination,
    IdentityActivity,
    IdentitySummary,
    MatchedRule,
    Policy,
    PolicyBinding,
    PolicyRule,
    PolicyTestResult,
    RegisteredIdentity,
    S3Destination,
    Secret,
    SecretListItem,
    SecretMetadata,
    SecretPage,
    VerifyResult,
)
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
    "Policy",
    "PolicyRule",
    "PolicyBinding",
    "PolicyTestResult",
    "MatchedRule",
    "RegisteredIdentity",
    "AuditRecord",
    "AuditLogs",
    "IdentityActivity",
    "IdentitySummary",
    "VerifyResult",
    "ExportJob",
    "S3Destination",
    "FileDestination",
    "ExportFailedError",
    "ScaiVaultError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "IdempotencyKeyReusedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "TransportError",
    "ValidationError",
]
