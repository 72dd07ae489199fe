//! New values for `generate` rotations: each named field of the secret's data gets a fresh
//! random string from the system's CSPRNG (aws-lc-rs); the other fields are kept.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use scaivault_api::rotation::{Charset, Generator};
use scaivault_api::secrets::SecretType;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::schedule::generated_fields;
use crate::error::{Error, Result};

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const SYMBOLS: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~";

/// `current` with every generated field replaced.
pub fn regenerate(
    generator: &Generator,
    secret_type: SecretType,
    current: &Map<String, Value>,
) -> Result<Map<String, Value>> {
    let mut next = current.clone();
    let prefix = generator.prefix.as_deref().unwrap_or_default();
    for field in generated_fields(generator, secret_type)? {
        let value = random_string(generator.charset.unwrap_or_default(), generator.length())?;
        next.insert(field, Value::String(format!("{prefix}{}", value.as_str())));
    }
    Ok(next)
}

fn fill(bytes: &mut [u8]) -> Result<()> {
    SystemRandom::new()
        .fill(bytes)
        .map_err(|_| Error::internal("the system's random generator failed"))
}

/// `length` characters of `charset`.
fn random_string(charset: Charset, length: u32) -> Result<Zeroizing<String>> {
    let length = length as usize;
    match charset {
        Charset::Alphanumeric => from_alphabet(ALPHANUMERIC, length),
        Charset::Symbols => from_alphabet(SYMBOLS, length),
        Charset::Hex => {
            // Two digits a byte; an odd length drops the last one.
            let mut bytes = Zeroizing::new(vec![0u8; length.div_ceil(2)]);
            fill(&mut bytes)?;
            let mut out = Zeroizing::new(String::with_capacity(length));
            for b in bytes.iter() {
                out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789abcdef"[usize::from(b & 0x0f)]));
            }
            out.truncate(length);
            Ok(out)
        }
        Charset::Base64url => {
            // Enough bytes for `length` characters (4 per 3 bytes), then cut to length.
            let mut bytes = Zeroizing::new(vec![0u8; length.div_ceil(4) * 3]);
            fill(&mut bytes)?;
            let mut out = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_slice()));
            out.truncate(length);
            Ok(out)
        }
    }
}

/// Uniform over `alphabet`: bytes at or above the largest multiple of its size are
/// drawn again, so no character is likelier than another.
fn from_alphabet(alphabet: &[u8], length: usize) -> Result<Zeroizing<String>> {
    let n = alphabet.len();
    let limit = 256 - 256 % n;
    let mut out = Zeroizing::new(String::with_capacity(length));
    let mut buf = Zeroizing::new([0u8; 64]);
    while out.len() < length {
        fill(buf.as_mut_slice())?;
        for &b in buf.iter() {
            if usize::from(b) < limit && out.len() < length {
                out.push(char::from(alphabet[usize::from(b) % n]));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(charset: Charset, length: u32) -> Generator {
        Generator {
            fields: Some(vec!["password".into()]),
            length: Some(length),
            charset: Some(charset),
            prefix: None,
        }
    }

    #[test]
    fn values_have_the_length_and_charset_asked_for() {
        type Allowed = fn(char) -> bool;
        let cases: [(Charset, Allowed); 4] = [
            (Charset::Alphanumeric, |c| c.is_ascii_alphanumeric()),
            (Charset::Symbols, |c| c.is_ascii_graphic()),
            (Charset::Hex, |c| {
                c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
            }),
            (Charset::Base64url, |c| {
                c.is_ascii_alphanumeric() || c == '-' || c == '_'
            }),
        ];
        for (charset, allowed) in cases {
            let data = regenerate(&generator(charset, 41), SecretType::Password, &Map::new())
                .ok()
                .and_then(|m| m.get("password").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            assert_eq!(data.len(), 41, "{charset:?}");
            assert!(data.chars().all(allowed), "{charset:?}: {data}");
        }
    }

    #[test]
    fn only_the_named_fields_change_and_each_value_is_new() {
        let mut current = Map::new();
        current.insert("username".into(), Value::String("app".into()));
        current.insert("password".into(), Value::String("old".into()));
        let g = Generator {
            prefix: Some("pw_".into()),
            ..generator(Charset::Alphanumeric, 24)
        };
        let a = regenerate(&g, SecretType::Json, &current)
            .ok()
            .unwrap_or_default();
        let b = regenerate(&g, SecretType::Json, &current)
            .ok()
            .unwrap_or_default();
        assert_eq!(a.get("username"), current.get("username"));
        let pw = a
            .get("password")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(pw.starts_with("pw_") && pw.len() == 27, "{pw}");
        assert_ne!(a.get("password"), b.get("password"));
    }

    #[test]
    fn every_character_of_the_alphabet_turns_up() {
        let drawn = from_alphabet(ALPHANUMERIC, 20_000).ok().unwrap_or_default();
        for c in ALPHANUMERIC {
            assert!(drawn.contains(char::from(*c)), "{}", char::from(*c));
        }
    }
}
