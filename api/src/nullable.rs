//! Request fields where `null` means something: absent keeps what is stored, `null`
//! clears it.

use serde::{Deserialize, Deserializer};

/// For `#[serde(default, deserialize_with = "crate::nullable::present")]` on an
/// `Option<Option<T>>` field: absent is `None`, `null` is `Some(None)`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
