//! [`Validity`]: a check's answer, serialized as JSON `true`, `false` or
//! `"unknown"` (Jepsen's convention), merged by priority valid < unknown < invalid.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Validity {
    /// The property holds on this history.
    #[default]
    Valid,
    /// The property is violated; the check names a counterexample.
    Invalid,
    /// The checker could not decide: budget exhausted, history incomplete, or
    /// the checker itself failed.
    Unknown,
}

impl Validity {
    fn rank(self) -> u8 {
        match self {
            Validity::Valid => 0,
            Validity::Unknown => 1,
            Validity::Invalid => 2,
        }
    }

    /// The worse of two answers: valid < unknown < invalid.
    #[must_use]
    pub fn merge(self, other: Validity) -> Validity {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// Merge many answers; no answers at all is valid.
    pub fn merge_all(all: impl IntoIterator<Item = Validity>) -> Validity {
        all.into_iter().fold(Validity::Valid, Validity::merge)
    }

    /// Lowercase word for people: `valid`, `invalid`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Validity::Valid => "valid",
            Validity::Invalid => "invalid",
            Validity::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::Valid => s.serialize_bool(true),
            Validity::Invalid => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for Validity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Validity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"unknown\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Validity, E> {
                Ok(if v {
                    Validity::Valid
                } else {
                    Validity::Invalid
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Validity, E> {
                match v {
                    "unknown" => Ok(Validity::Unknown),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_jepsen_does() {
        let all = [Validity::Valid, Validity::Invalid, Validity::Unknown];
        let json = serde_json::to_string(&all).unwrap();
        assert_eq!(json, r#"[true,false,"unknown"]"#);
        let back: Vec<Validity> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, all);
        assert!(serde_json::from_str::<Validity>(r#""maybe""#).is_err());
    }

    #[test]
    fn merges_by_priority() {
        use Validity::*;
        assert_eq!(Valid.merge(Unknown), Unknown);
        assert_eq!(Unknown.merge(Valid), Unknown);
        assert_eq!(Unknown.merge(Invalid), Invalid);
        assert_eq!(Invalid.merge(Unknown), Invalid);
        assert_eq!(Validity::merge_all([]), Valid);
        assert_eq!(Validity::merge_all([Valid, Invalid, Unknown]), Invalid);
    }
}
