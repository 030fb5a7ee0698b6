//! A mapping whose `type:` picks the struct its other keys belong to (a
//! notifier: `{ type: telegram, token: …, chat_id: …, min_severity: … }`).
//! Keys every kind takes go to a [`Shared`] struct; the rest are read
//! straight into the kind's own struct, which its module owns, so
//! serde_yaml still places every error at its line and key. Keys written
//! before `type:` are judged against every kind's keys where they are
//! written, then held and replayed (an error in such a value is placed at
//! the mapping).

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, StringDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

/// The keys every kind of a tagged mapping takes.
pub(crate) trait Shared: Default {
    /// The shared keys.
    const KEYS: &'static [&'static str];

    /// Reads `key`'s value into `self` when it is one of the shared keys;
    /// `false` leaves the value unread.
    fn read_key<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error>;
}

/// The closed set of kinds a tagged mapping's `type:` names.
pub(crate) trait Kinds: Sized {
    /// What the mapping is, for messages: `notifier`.
    const WHAT: &'static str;

    /// Every `type:` name, in the order messages list them.
    fn names() -> Vec<&'static str>;

    /// Reads the kind named `name` (one of [`Kinds::names`]) from the
    /// mapping's remaining keys.
    fn read<'de, D: Deserializer<'de>>(name: &str, rest: D) -> Result<Self, D::Error>;

    /// The keys the kind named `name` takes besides `type:` and the shared
    /// ones (see [`field_names`]).
    fn keys(name: &str) -> &'static [&'static str];
}

/// The keys serde's derive reads into `T` (what its `deny_unknown_fields`
/// accepts): asked of `T` itself, so no second list is written by hand.
pub(crate) fn field_names<T: de::DeserializeOwned>() -> &'static [&'static str] {
    struct Fields<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("the fields are read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

/// The keys a misspelt key is offered: `type`, the shared ones and those of
/// `kinds` (one kind's, or, before `type:` is read, every kind's). Built
/// once per list and kept: serde's "expected one of" wants them `'static`.
fn expected<S: Shared>(
    what: &'static str,
    kind: Option<&'static str>,
    kinds: &[&'static str],
) -> &'static [&'static str] {
    type Lists = BTreeMap<(&'static str, Option<&'static str>), &'static [&'static str]>;
    static LISTS: Mutex<Lists> = Mutex::new(BTreeMap::new());
    let mut lists = LISTS.lock().unwrap_or_else(|p| p.into_inner());
    lists.entry((what, kind)).or_insert_with(|| {
        let mut keys: Vec<&'static str> = vec!["type"];
        for key in S::KEYS.iter().chain(kinds) {
            if !keys.contains(key) {
                keys.push(key);
            }
        }
        Box::leak(keys.into_boxed_slice())
    })
}

/// Reads a tagged mapping into its shared keys and its kind, and makes
/// them one value with `finish` while still inside the mapping (so its
/// complaint is placed at the mapping).
pub(crate) fn read<'de, D, S, K, T, F>(d: D, finish: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    S: Shared,
    K: Kinds,
    F: FnOnce(S, K) -> Result<T, String>,
{
    struct V<S, K, F>(F, std::marker::PhantomData<(S, K)>);
    impl<'de, S: Shared, K: Kinds, T, F: FnOnce(S, K) -> Result<T, String>> Visitor<'de>
        for V<S, K, F>
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a {} mapping with `type:`", K::WHAT)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
            let mut shared = S::default();
            let mut early: Vec<(String, serde_yaml::Value)> = Vec::new();
            let mut seen: Vec<String> = Vec::new();
            let every_kind: Vec<&'static str> = K::names()
                .into_iter()
                .flat_map(|name| K::keys(name).iter().copied())
                .collect();
            let early_keys = EarlyKey {
                known: &every_kind,
                expected: expected::<S>(K::WHAT, None, &every_kind),
                shared: S::KEYS,
            };
            let name = loop {
                let Some(key) = map.next_key_seed(early_keys)? else {
                    return Err(de::Error::custom(format!(
                        "a {} needs `type:` ({})",
                        K::WHAT,
                        K::names().join(", ")
                    )));
                };
                if key == "type" {
                    break map.next_value_seed(KindName::<K>(std::marker::PhantomData))?;
                }
                if seen.contains(&key) {
                    return Err(de::Error::custom(format!("duplicate field `{key}`")));
                }
                seen.push(key.clone());
                if !shared.read_key(&key, &mut map)? {
                    early.push((key, map.next_value()?));
                }
            };
            let before_type: Vec<&'static str> = S::KEYS
                .iter()
                .copied()
                .filter(|k| seen.iter().any(|s| s == k))
                .collect();
            let rest = Rest {
                own: K::keys(name),
                expected: expected::<S>(K::WHAT, Some(name), K::keys(name)),
                early: early.into_iter(),
                replay: None,
                seen: before_type,
                map: &mut map,
                shared: &mut shared,
            };
            let kind = K::read(name, MapAccessDeserializer::new(rest))?;
            (self.0)(shared, kind).map_err(|why| de::Error::custom(super::across_keys(&why)))
        }
    }
    d.deserialize_map(V(finish, std::marker::PhantomData))
}

/// The value of `type:`, checked against the kinds where it is written.
struct KindName<K>(std::marker::PhantomData<K>);

impl<'de, K: Kinds> DeserializeSeed<'de> for KindName<K> {
    type Value = &'static str;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        let written = String::deserialize(d)?;
        K::names()
            .into_iter()
            .find(|name| *name == written)
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "unknown {} type{}: use {}",
                    K::WHAT,
                    super::values::word(&written),
                    K::names().join(", ")
                ))
            })
    }
}

/// The mapping's keys after `type:`, less the shared ones.
struct Rest<'a, A, S> {
    early: std::vec::IntoIter<(String, serde_yaml::Value)>,
    /// The value of the early key last handed out.
    replay: Option<serde_yaml::Value>,
    /// The shared keys read after `type:`.
    seen: Vec<&'static str>,
    /// The kind's own keys, and the keys a misspelt one is offered.
    own: &'static [&'static str],
    expected: &'static [&'static str],
    map: &'a mut A,
    shared: &'a mut S,
}

impl<'de, A: MapAccess<'de>, S: Shared> MapAccess<'de> for Rest<'_, A, S> {
    type Error = A::Error;

    fn next_key_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        if let Some((key, value)) = self.early.next() {
            self.replay = Some(value);
            return seed.deserialize(StringDeserializer::new(key)).map(Some);
        }
        let mut seed = Some(seed);
        loop {
            // The kind's own seed judges the key inside serde_yaml's reading
            // of it: an unknown key is placed at its line and column.
            let key = Key::<T, S> {
                seed: &mut seed,
                seen: &self.seen,
                own: self.own,
                expected: self.expected,
                shared: std::marker::PhantomData,
            };
            let Some(key) = self.map.next_key_seed(key)? else {
                return Ok(None);
            };
            match key {
                Keyed::Own(value) => return Ok(Some(value)),
                Keyed::Type => return Err(de::Error::duplicate_field("type")),
                Keyed::Shared(key) => {
                    self.seen.push(key);
                    self.shared.read_key(key, self.map)?;
                }
            }
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        match self.replay.take() {
            Some(value) => seed.deserialize(value).map_err(de::Error::custom),
            None => self.map.next_value_seed(seed),
        }
    }
}

/// A key after `type:`: the kind's own (judged by its seed), `type` again,
/// or one of the shared keys.
enum Keyed<V> {
    Own(V),
    Type,
    Shared(&'static str),
}

/// Reads one key, handing it to the kind's seed unless it is `type` or one
/// of `S::KEYS`.
struct Key<'s, T, S> {
    seed: &'s mut Option<T>,
    /// The shared keys read so far: each may be written once.
    seen: &'s [&'static str],
    own: &'static [&'static str],
    expected: &'static [&'static str],
    shared: std::marker::PhantomData<S>,
}

impl<'de, T: DeserializeSeed<'de>, S: Shared> DeserializeSeed<'de> for Key<'_, T, S> {
    type Value = Keyed<T::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, T: DeserializeSeed<'de>, S: Shared> Visitor<'de> for Key<'_, T, S> {
    type Value = Keyed<T::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if key == "type" {
            return Ok(Keyed::Type);
        }
        if let Some(shared) = S::KEYS.iter().find(|k| **k == key) {
            if self.seen.contains(shared) {
                return Err(E::duplicate_field(shared));
            }
            return Ok(Keyed::Shared(shared));
        }
        if !self.own.contains(&key) {
            return Err(E::unknown_field(key, self.expected));
        }
        let seed = self
            .seed
            .take()
            .ok_or_else(|| E::custom("a key was read twice"))?;
        seed.deserialize(de::value::StrDeserializer::new(key))
            .map(Keyed::Own)
    }
}

/// A key written before `type:`: judged against every kind's keys, so a
/// misspelt one is placed at its own line even before the kind is known.
#[derive(Clone, Copy)]
struct EarlyKey<'a> {
    known: &'a [&'static str],
    expected: &'static [&'static str],
    shared: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for EarlyKey<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for EarlyKey<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if key == "type" || self.shared.contains(&key) || self.known.contains(&key) {
            Ok(key.to_string())
        } else {
            Err(E::unknown_field(key, self.expected))
        }
    }
}
