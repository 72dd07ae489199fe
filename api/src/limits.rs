//! Limits shared by server and clients. The server enforces them; clients may check early.

/// Maximum length of a secret path in bytes.
pub const MAX_PATH_BYTES: usize = 512;
/// Maximum number of `/`-separated segments in a secret path.
pub const MAX_PATH_DEPTH: usize = 16;
/// Default maximum size of a secret's `data`, serialized as JSON.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;
/// Default maximum size of a request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Maximum number of tags on one secret.
pub const MAX_TAGS: usize = 32;
/// Maximum length of one tag.
pub const MAX_TAG_CHARS: usize = 64;
/// Maximum length of a description.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Maximum number of paths in one batch read.
pub const MAX_BATCH_PATHS: usize = 100;
/// Default and maximum page size of a list.
pub const DEFAULT_LIST_LIMIT: usize = 100;
pub const MAX_LIST_LIMIT: usize = 1000;
/// How long a list's `next_cursor` stays valid.
pub const LIST_CURSOR_TTL_SECS: u64 = 3600;
/// Longest `cursor` a server accepts (a sealed cursor over the longest path is ~760).
pub const MAX_CURSOR_CHARS: usize = 1024;
/// Most rows one list request examines to fill a page: past it the page comes back short,
/// with a `next_cursor` to go on from (rows the caller may not list cost scanning too).
pub const MAX_LIST_SCAN_ROWS: usize = 10 * MAX_LIST_LIMIT;
/// Most rules one policy may hold.
pub const MAX_POLICY_RULES: usize = 100;
/// Longest policy name.
pub const MAX_POLICY_NAME_CHARS: usize = 128;
/// Longest display name of an identity.
pub const MAX_DISPLAY_NAME_CHARS: usize = 128;
/// Version retention bounds.
pub const DEFAULT_MAX_VERSIONS: u32 = 10;
pub const MAX_MAX_VERSIONS: u32 = 100;
/// Token TTLs.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 24 * 3600;
pub const MAX_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;
