//! Deserializers that accept what MidoNet's Jackson accepted: integers sent as
//! JSON strings (`"24"`), `null` for a primitive (false / 0), `null` for a list.

use serde::de::{Deserialize, DeserializeOwned, Deserializer, Error};
use serde_json::Value;

fn to_i64<E: Error>(v: &Value) -> Result<Option<i64>, E> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| E::custom(format!("expected an integer, got {n}"))),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| E::custom(format!("expected an integer, got \"{s}\""))),
        other => Err(E::custom(format!("expected an integer, got {other}"))),
    }
}

fn narrow<T: TryFrom<i64>, E: Error>(n: i64) -> Result<T, E> {
    T::try_from(n).map_err(|_| E::custom(format!("integer {n} out of range")))
}

/// An integer; `null` or absent is the type's default.
pub fn int<'de, D: Deserializer<'de>, T: TryFrom<i64> + Default>(d: D) -> Result<T, D::Error> {
    match to_i64(&Value::deserialize(d)?)? {
        None => Ok(T::default()),
        Some(n) => narrow(n),
    }
}

/// An optional integer: `null` stays unset.
pub fn opt_int<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
    match to_i64(&Value::deserialize(d)?)? {
        None => Ok(None),
        Some(n) => narrow(n).map(Some),
    }
}

/// A boolean; `null` is false; "true"/"false" strings are accepted.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(D::Error::custom(format!("expected a boolean, got {other}"))),
    }
}

/// A boolean that defaults to true when `null` (admin state).
pub fn bool_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(true),
        v => bool(v).map_err(D::Error::custom),
    }
}

/// An optional boolean.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => bool(v).map(Some).map_err(D::Error::custom),
    }
}

/// A list; `null` is empty.
pub fn vec<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        v => serde_json::from_value(v).map_err(D::Error::custom),
    }
}

/// An optional value where the empty string means unset (forms send `""`).
pub fn opt<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        v => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
    }
}

pub fn default_true() -> bool {
    true
}

/// A list whose name is also a link on the wire (a client PUTs back the
/// document it read): a string there is the link, and means "no list given".
pub fn vec_or_link<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null | Value::String(_) => Ok(Vec::new()),
        v => serde_json::from_value(v).map_err(D::Error::custom),
    }
}
