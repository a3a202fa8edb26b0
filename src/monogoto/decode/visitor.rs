//! The serde machinery of the one-pass decoder: a [`Decode`] says what to do
//! with each JSON kind, [`Scalar`] keeps a field's value, `field_names!`
//! matches keys without allocating them.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// How a value is decoded, by its JSON kind. The kinds a decoder leaves out
/// are still checked, then skipped and answered with [`Decode::other`], so
/// no shape of an answer is an error.
pub(super) trait Decode<'de>: Sized {
    type Value;

    fn other(self) -> Self::Value;

    fn null(self) -> Self::Value {
        self.other()
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_entries(map)?;
        Ok(self.other())
    }

    fn array<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_elements(seq)?;
        Ok(self.other())
    }
}

/// Decodes the next value, whatever its kind, with a [`Decode`].
pub(super) struct Any<D>(pub(super) D);

impl<'de, D: Decode<'de>> DeserializeSeed<'de> for Any<D> {
    type Value = D::Value;

    fn deserialize<T: Deserializer<'de>>(self, deserializer: T) -> Result<D::Value, T::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, D: Decode<'de>> Visitor<'de> for Any<D> {
    type Value = D::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<D::Value, E> {
        Ok(self.0.null())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<D::Value, E> {
        Ok(self.0.other())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<D::Value, E> {
        Ok(self.0.other())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<D::Value, E> {
        Ok(self.0.other())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<D::Value, E> {
        Ok(self.0.other())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<D::Value, E> {
        Ok(self.0.other())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<D::Value, A::Error> {
        self.0.array(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<D::Value, A::Error> {
        self.0.object(map)
    }
}

/// Any value, checked as strictly as a `serde_json::Value` is, then dropped.
/// Not [`de::IgnoredAny`]: serde_json skips that without checking UTF-8,
/// escapes, number range or nesting depth, and would accept bodies that are
/// rejected as not JSON.
pub(super) struct Skip;

impl<'de> Decode<'de> for Skip {
    type Value = ();

    fn other(self) {}
}

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Skip, D::Error> {
        deserializer.deserialize_any(Any(Skip)).map(|()| Skip)
    }
}

fn skip_entries<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<Skip, Skip>()?.is_some() {}
    Ok(())
}

pub(super) fn skip_elements<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

/// A field's value as far as the exporter reads it: scalars kept, strings
/// borrowed from the body unless they have escapes; booleans, arrays and
/// objects only noted.
#[derive(Debug)]
pub(super) enum Scalar<'de> {
    Null,
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'de, str>),
    Other,
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::I64(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::U64(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::F64(n))
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'de>, A::Error> {
        skip_elements(seq).map(|()| Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
        skip_entries(map).map(|()| Scalar::Other)
    }
}

impl<'a> From<&'a Value> for Scalar<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Null => Scalar::Null,
            Value::Number(n) => n
                .as_u64()
                .map(Scalar::U64)
                .or_else(|| n.as_i64().map(Scalar::I64))
                .or_else(|| n.as_f64().map(Scalar::F64))
                .unwrap_or(Scalar::Other),
            Value::String(s) => Scalar::Str(Cow::Borrowed(s)),
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => Scalar::Other,
        }
    }
}

/// Declares the field names a decoder reads, matched against a key without
/// allocating it; any other key is `Other`.
macro_rules! field_names {
    ($name:ident { $($variant:ident = $key:pat,)* }) => {
        #[derive(Clone, Copy)]
        enum $name {
            $($variant,)*
            Other,
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_identifier(FieldName(|name: &str| match name {
                    $($key => $name::$variant,)*
                    _ => $name::Other,
                }))
            }
        }
    };
}
pub(super) use field_names;

/// Matches a key with its closure, whether the key was borrowed or unescaped.
pub(super) struct FieldName<F>(pub(super) F);

impl<'de, T, F: FnOnce(&str) -> T> Visitor<'de> for FieldName<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<T, E> {
        Ok((self.0)(name))
    }
}

/// A scalar as a finite number: JSON numbers, and numeric strings.
pub(super) fn number(value: &Scalar) -> Option<f64> {
    let n = match value {
        Scalar::U64(n) => *n as f64,
        Scalar::I64(n) => *n as f64,
        Scalar::F64(n) => *n,
        Scalar::Str(s) => s.trim().parse::<f64>().ok()?,
        Scalar::Null | Scalar::Other => return None,
    };
    n.is_finite().then_some(n)
}
