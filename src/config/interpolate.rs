//! `${VAR}` and `${VAR:-default}` in every scalar of jobs.yaml: a serde
//! deserializer adapter that expands the environment in each string
//! scalar before the typed value reads it, so `burst: ${BURST:-10}`,
//! `enabled: ${ON:-true}` and `path: ${DATA}/node.log` work like any
//! string. It wraps the YAML deserializer, so errors keep their line and
//! column. Map keys are left as written.
//!
//! A value that came from the environment is never echoed in an error (it
//! may be a token): the message names the `${…}` text instead.

use super::values::interpolate_tracked;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use std::cell::RefCell;
use std::fmt;

thread_local! {
    /// Values put in by variables whose name says they are secret, while
    /// a jobs.yaml is read on this thread: [`take_secret_values`].
    static SECRET_VALUES: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// Whether a variable's name says it holds a secret (`INFURA_KEY`,
/// `RPC_TOKEN`, `DB_PASSWORD`, `API_SECRET`, `AUTH`…).
pub fn secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    // `REDIS_PASS`, `DB_PWD`; not the shell's own `PWD` (a folder).
    let pwd = upper.ends_with("_PWD") || upper.starts_with("PWD_");
    pwd || [
        "TOKEN", "SECRET", "PASS", "KEY", "AUTH", "CRED", "PRIVATE", "APIKEY",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

/// `(name, value)` of every secret-named variable read since the last
/// call on this thread.
pub fn take_secret_values() -> Vec<(String, String)> {
    SECRET_VALUES.with(|values| std::mem::take(&mut *values.borrow_mut()))
}

/// Wraps a deserializer so every string scalar below it is interpolated.
pub struct Interpolating<D>(pub D);

/// What the value being read wants, to turn an expanded string into it.
#[derive(Clone, Copy)]
enum Want {
    Any,
    Bool,
    Number,
}

struct Wrap<V> {
    inner: V,
    want: Want,
}

macro_rules! forward_as {
    ($want:expr => $($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.deserialize_any(Wrap { inner: visitor, want: $want })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Interpolating<D> {
    type Error = D::Error;

    forward_as!(Want::Number => deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64);
    forward_as!(Want::Bool => deserialize_bool);

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(wrap(visitor))
    }
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_char(wrap(visitor))
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_str(wrap(visitor))
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_string(wrap(visitor))
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_bytes(wrap(visitor))
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_byte_buf(wrap(visitor))
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_option(wrap(visitor))
    }
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit(wrap(visitor))
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, wrap(visitor))
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, wrap(visitor))
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_seq(wrap(visitor))
    }
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, wrap(visitor))
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, wrap(visitor))
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(wrap(visitor))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, wrap(visitor))
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, wrap(visitor))
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // Field names are not values.
        self.0.deserialize_identifier(visitor)
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_ignored_any(visitor)
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

fn wrap<V>(inner: V) -> Wrap<V> {
    Wrap {
        inner,
        want: Want::Any,
    }
}

impl<V> Wrap<V> {
    /// Expands `text`; for a number or flag, reads the result as one.
    fn scalar<'de, E: de::Error>(self, text: &str) -> Result<V::Value, E>
    where
        V: Visitor<'de>,
    {
        if text == "$" {
            // `key: ${VAR}` inside `{ … }`: YAML took `{VAR}` for a mapping.
            return Err(E::custom(
                "a `${…}` inside a `{ … }` mapping must be quoted: quote it, e.g. key: \"${NAME}\"",
            ));
        }
        let (expanded, used) =
            interpolate_tracked(text, |name| std::env::var(name).ok()).map_err(E::custom)?;
        let from_environment = !used.is_empty();
        SECRET_VALUES.with(|values| {
            values.borrow_mut().extend(
                used.iter()
                    .filter(|(name, value)| secret_name(name) && value.len() >= 8)
                    .cloned(),
            );
        });
        // An error about the value names the variable, never its content.
        let hide = |error: E| -> E {
            let mut message = error.to_string();
            for (name, value) in used.iter().filter(|(_, v)| v.len() >= 4) {
                message = message.replace(value.as_str(), &format!("${{{name}}}"));
            }
            E::custom(message)
        };
        let trimmed = expanded.trim().to_string();
        let result = self.visit_expanded(text, expanded, &trimmed, from_environment);
        if from_environment {
            result.map_err(hide)
        } else {
            result
        }
    }

    fn visit_expanded<'de, E: de::Error>(
        self,
        text: &str,
        expanded: String,
        trimmed: &str,
        from_environment: bool,
    ) -> Result<V::Value, E>
    where
        V: Visitor<'de>,
    {
        match self.want {
            Want::Any => self.inner.visit_string(expanded),
            Want::Bool => match trimmed {
                "true" => self.inner.visit_bool(true),
                "false" => self.inner.visit_bool(false),
                _ if from_environment => Err(E::custom(format!(
                    "{text:?} expands to a value that is not true or false"
                ))),
                _ => self.inner.visit_string(expanded),
            },
            Want::Number => {
                if let Ok(n) = trimmed.parse::<u64>() {
                    self.inner.visit_u64(n)
                } else if let Ok(n) = trimmed.parse::<i64>() {
                    self.inner.visit_i64(n)
                } else if let Some(n) = trimmed.parse::<f64>().ok().filter(|n| n.is_finite()) {
                    self.inner.visit_f64(n)
                } else if from_environment {
                    Err(E::custom(format!(
                        "{text:?} expands to a value that is not a number"
                    )))
                } else {
                    self.inner.visit_string(expanded)
                }
            }
        }
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.scalar(v)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.scalar(v)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.scalar(&v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<V::Value, E> {
        self.inner.visit_bool(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<V::Value, E> {
        self.inner.visit_i64(v)
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<V::Value, E> {
        self.inner.visit_i128(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<V::Value, E> {
        self.inner.visit_u64(v)
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<V::Value, E> {
        self.inner.visit_u128(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        self.inner.visit_f64(v)
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<V::Value, E> {
        self.inner.visit_char(v)
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.inner.visit_bytes(v)
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.inner.visit_byte_buf(v)
    }
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Interpolating(d))
    }
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Interpolating(d))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Interpolating(seq))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Interpolating(map))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Interpolating(data))
    }
}

/// A seed whose value is read through the adapter.
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Interpolating(d))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Interpolating<A> {
    type Error = A::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Interpolating<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Interpolating<A> {
    type Error = A::Error;
    type Variant = Interpolating<A::Variant>;
    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(seed)?;
        Ok((value, Interpolating(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Interpolating<A> {
    type Error = A::Error;
    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, wrap(visitor))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, wrap(visitor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Shape {
        burst: f64,
        streak: Option<u32>,
        enabled: bool,
        name: String,
        list: Vec<String>,
        #[serde(default)]
        params: Option<serde_json::Value>,
    }

    fn read(yaml: &str) -> Result<Shape, String> {
        let de = serde_yaml::Deserializer::from_str(yaml);
        Shape::deserialize(Interpolating(de)).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_flags_strings_and_lists_expand() {
        let shape = read(
            "burst: ${MONITOR_TEST_NOPE:-10}\nstreak: ${MONITOR_TEST_NOPE:-7}\nenabled: ${MONITOR_TEST_NOPE:-false}\nname: a-${MONITOR_TEST_NOPE:-7}\nlist: [x, \"${MONITOR_TEST_NOPE:-y}\"]\nparams: [\"${MONITOR_TEST_NOPE:-7}\", 3]\n",
        )
        .unwrap();
        assert_eq!(
            shape,
            Shape {
                burst: 10.0,
                streak: Some(7),
                enabled: false,
                name: "a-7".into(),
                list: vec!["x".into(), "y".into()],
                params: Some(serde_json::json!(["7", 3])),
            }
        );
        let plain = read("burst: 2.5\nstreak: 3\nenabled: true\nname: n\nlist: []\n").unwrap();
        assert_eq!(
            (plain.burst, plain.streak, plain.enabled),
            (2.5, Some(3), true)
        );
        assert_eq!(
            read("burst: \"4\"\nenabled: true\nname: n\nlist: []\nstreak:\n")
                .unwrap()
                .burst,
            4.0
        );
    }

    #[test]
    fn errors_keep_their_place_and_never_show_the_value() {
        // PATH is set and is no number; its value must not show.
        let path = std::env::var("PATH").unwrap_or_default();
        let error =
            read("burst: 1\nstreak: ${PATH}\nenabled: true\nname: n\nlist: []\n").unwrap_err();
        assert!(
            error.contains("expands to a value that is not a number"),
            "{error}"
        );
        assert!(error.contains("line 2"), "{error}");
        assert!(!error.contains(&path), "{error}");
        let error = read("burst: 1\nenabled: ${PATH}\nname: n\nlist: []\n").unwrap_err();
        assert!(!error.contains(&path), "{error}");
        let error =
            read("burst: ${MONITOR_TEST_UNSET_VARIABLE}\nenabled: true\nname: n\nlist: []\n")
                .unwrap_err();
        assert!(
            error.contains("MONITOR_TEST_UNSET_VARIABLE is not set") && error.contains("line 1"),
            "{error}"
        );
    }

    #[test]
    fn secret_names_include_the_usual_spellings_of_a_password() {
        for name in [
            "REDIS_PASS",
            "DB_PASSWD",
            "SMTP_PASSWORD",
            "MYSQL_PWD",
            "RPC_TOKEN",
        ] {
            assert!(secret_name(name), "{name}");
        }
        for name in ["PWD", "OLDPWD", "RPC_URL", "HOME"] {
            assert!(!secret_name(name), "{name}");
        }
    }
}
