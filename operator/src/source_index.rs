//! Which VaultSecrets read a vault path: what an event of the vault's stream is matched
//! against (`event_stream`).
//!
//! Kept from the VaultSecret watch itself, one step before the reflector stores an
//! object: the store then still holds the object's previous version, so a changed
//! `spec.path` is moved without a second map from object to path. A relist (watcher
//! `Init` .. `InitDone`) builds a new index beside the old one and swaps, as the store
//! does, so objects deleted while the watch was down leave it too.
//!
//! Lean on purpose (issue 20, memory at 10,000 VaultSecrets): the map is keyed by a hash
//! of the path (not the path), and holds one `namespace/name` string per object, inline
//! when a path has one reader: under 90 bytes an object, 844 KiB resident at 10,000
//! (`tests/source_index_memory.rs`).
//! A hash collision only offers another path's objects: whether an object reads the path
//! is checked against the store when an event comes (`event_stream`).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::crd::VaultSecret;

pub type Guarded = DeserializeGuard<VaultSecret>;

/// `namespace/name` (a namespace has no `/`).
type Key = Box<str>;

/// The objects of one path: most paths have one.
enum Refs {
    One(Key),
    Many(Vec<Key>),
}

impl Refs {
    fn keys(&self) -> &[Key] {
        match self {
            Refs::One(key) => std::slice::from_ref(key),
            Refs::Many(keys) => keys,
        }
    }
}

type Map = HashMap<u64, Refs>;

fn hash_of(path: &str) -> u64 {
    let mut h = DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

#[derive(Default)]
struct State {
    paths: Map,
    /// The index being rebuilt by a relist, swapped in at `InitDone`.
    relist: Option<Map>,
}

#[derive(Default)]
pub struct SourceIndex {
    state: Mutex<State>,
}

fn key_of(obj: &Guarded) -> Key {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()).into()
}

/// The vault path an object reads; none for one that does not parse.
pub fn path_of(obj: &Guarded) -> Option<&str> {
    obj.0.as_ref().ok().map(|vs| vs.spec.path.as_str())
}

fn insert(map: &mut Map, path: &str, key: Key) {
    use std::collections::hash_map::Entry;
    match map.entry(hash_of(path)) {
        Entry::Vacant(slot) => {
            slot.insert(Refs::One(key));
        }
        Entry::Occupied(mut slot) => {
            let refs = slot.get_mut();
            if refs.keys().contains(&key) {
                return;
            }
            match refs {
                Refs::One(first) => {
                    let first = std::mem::take(first);
                    *refs = Refs::Many(vec![first, key]);
                }
                Refs::Many(keys) => keys.push(key),
            }
        }
    }
}

fn remove(map: &mut Map, path: &str, key: &str) {
    let hash = hash_of(path);
    let Some(refs) = map.get_mut(&hash) else {
        return;
    };
    let empty = match refs {
        Refs::One(k) => &**k == key,
        Refs::Many(keys) => {
            keys.retain(|k| &**k != key);
            if let [only] = keys.as_mut_slice() {
                *refs = Refs::One(std::mem::take(only));
                false
            } else {
                keys.is_empty()
            }
        }
    };
    if empty {
        map.remove(&hash);
    }
}

impl SourceIndex {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every step is one insert or removal: a poisoned lock holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows one watch event; `store` is the reflector's, not yet updated by it.
    pub fn observe(&self, event: &watcher::Event<Guarded>, store: &Store<Guarded>) {
        let mut state = self.lock();
        match event {
            watcher::Event::Apply(obj) => {
                let key = key_of(obj);
                let old = store.get(&ObjectRef::from(obj));
                let old_path = old.as_deref().and_then(path_of);
                let new_path = path_of(obj);
                if old_path != new_path
                    && let Some(old_path) = old_path
                {
                    remove(&mut state.paths, old_path, &key);
                }
                if let Some(path) = new_path {
                    insert(&mut state.paths, path, key);
                }
            }
            watcher::Event::Delete(obj) => {
                let key = key_of(obj);
                // The stored version is the one indexed (the deleted one normally equals it).
                let old = store.get(&ObjectRef::from(obj));
                for path in [old.as_deref().and_then(path_of), path_of(obj)]
                    .into_iter()
                    .flatten()
                {
                    remove(&mut state.paths, path, &key);
                }
            }
            watcher::Event::Init => state.relist = Some(Map::new()),
            watcher::Event::InitApply(obj) => {
                if let (Some(map), Some(path)) = (state.relist.as_mut(), path_of(obj)) {
                    insert(map, path, key_of(obj));
                }
            }
            watcher::Event::InitDone => {
                if let Some(map) = state.relist.take() {
                    state.paths = map;
                }
            }
        }
    }

    /// The objects reading `path` (and, rarely, of another path of the same hash).
    pub fn lookup(&self, path: &str) -> Vec<ObjectRef<Guarded>> {
        self.lock()
            .paths
            .get(&hash_of(path))
            .map(|refs| {
                refs.keys()
                    .iter()
                    .filter_map(|key| {
                        let (namespace, name) = key.split_once('/')?;
                        Some(ObjectRef::new(name).within(namespace))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Paths indexed (for tests and logs).
    pub fn len(&self) -> usize {
        self.lock().paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kube::runtime::reflector;

    fn vs(ns: &str, name: &str, path: &str) -> Guarded {
        let obj: VaultSecret = serde_json::from_value(serde_json::json!({
            "apiVersion": "scaivault.io/v1alpha1", "kind": "VaultSecret",
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
            "spec": {"path": path, "target": {"name": name}}
        }))
        .unwrap();
        DeserializeGuard(Ok(obj))
    }

    fn names(refs: Vec<ObjectRef<Guarded>>) -> Vec<String> {
        let mut names: Vec<String> = refs
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn follows_applies_moves_deletes_and_relists() {
        let (reader, mut writer) = reflector::store::<Guarded>();
        let index = SourceIndex::default();
        let mut step = |event: watcher::Event<Guarded>| {
            index.observe(&event, &reader);
            writer.apply_watcher_event(&event);
        };
        step(watcher::Event::Apply(vs("a", "one", "apps/db")));
        step(watcher::Event::Apply(vs("b", "two", "apps/db")));
        step(watcher::Event::Apply(vs("a", "three", "apps/cache")));
        assert_eq!(names(index.lookup("apps/db")), ["a/one", "b/two"]);
        // Applied again unchanged: still once.
        step(watcher::Event::Apply(vs("a", "one", "apps/db")));
        assert_eq!(names(index.lookup("apps/db")), ["a/one", "b/two"]);
        // A new path moves the object.
        step(watcher::Event::Apply(vs("b", "two", "apps/other")));
        assert_eq!(names(index.lookup("apps/db")), ["a/one"]);
        assert_eq!(names(index.lookup("apps/other")), ["b/two"]);
        step(watcher::Event::Delete(vs("a", "one", "apps/db")));
        assert!(index.lookup("apps/db").is_empty());
        assert_eq!(index.len(), 2);
        // A relist that no longer sees `three` drops it at InitDone, not before.
        step(watcher::Event::Init);
        step(watcher::Event::InitApply(vs("b", "two", "apps/other")));
        assert_eq!(names(index.lookup("apps/cache")), ["a/three"]);
        step(watcher::Event::InitDone);
        assert!(index.lookup("apps/cache").is_empty());
        assert_eq!(names(index.lookup("apps/other")), ["b/two"]);
        assert_eq!(index.len(), 1);
    }
}
