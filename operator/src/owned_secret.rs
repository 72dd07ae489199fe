//! The operator's cache of the Secrets it writes: for each, what a reconcile reads and
//! nothing more.
//!
//! kube-runtime's reflector stores any type that implements `Lookup`, so the cache does
//! not have to hold k8s-openapi `Secret`s (an `ObjectMeta` of 15 fields, a B-tree node
//! per map however few entries it holds, the secret values). Each watch event is turned
//! into an [`OwnedSecret`]: the data becomes its MAC, labels and annotations become short
//! sorted lists (our managed-by label, which every cached Secret carries, a flag), and
//! only VaultSecret owners are kept. About a third of the bytes of a projected `Secret`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{Lookup, ObjectRef};
use kube::runtime::watcher;

use crate::context::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::crd::VaultSecret;
use crate::mac::MacKey;

/// `kubectl apply`'s copy of the object as last applied: dropped from the cache (it is
/// the whole object again, values included), so never compared.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A Secret's type when the apiserver reports none.
const DEFAULT_TYPE: &str = "Opaque";

/// An owned Secret as the operator keeps it. No secret value: the data is held as its
/// MAC only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedSecret {
    name: Box<str>,
    namespace: Option<Box<str>>,
    type_: Cow<'static, str>,
    /// `MacKey::mac` of the type and data.
    mac: Box<str>,
    /// Carries `MANAGED_BY_LABEL=MANAGED_BY_VALUE` (kept as a flag, not as strings).
    managed: bool,
    /// The other labels, sorted by key.
    labels: Box<[(Box<str>, Box<str>)]>,
    /// The annotations but `LAST_APPLIED`, sorted by key.
    annotations: Box<[(Box<str>, Box<str>)]>,
    /// The owner references to VaultSecrets (uids are unique: no other kind can match).
    owners: Box<[Owner]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Owner {
    name: Box<str>,
    uid: Box<str>,
    controller: bool,
}

/// The types `render::type_name` produces are shared, not copied per Secret.
fn type_name(type_: Option<String>) -> Cow<'static, str> {
    const KNOWN: [&str; 3] = [
        DEFAULT_TYPE,
        "kubernetes.io/tls",
        "kubernetes.io/dockerconfigjson",
    ];
    match type_ {
        None => Cow::Borrowed(DEFAULT_TYPE),
        Some(t) => match KNOWN.iter().find(|k| **k == t) {
            Some(k) => Cow::Borrowed(k),
            None => Cow::Owned(t),
        },
    }
}

fn sorted(map: BTreeMap<String, String>) -> Box<[(Box<str>, Box<str>)]> {
    map.into_iter()
        .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
        .collect()
}

/// Whether `have` (sorted by key) holds every `(key, value)` of `want`.
fn holds<'a>(
    have: &[(Box<str>, Box<str>)],
    mut want: impl Iterator<Item = (&'a String, &'a String)>,
) -> bool {
    want.all(|(k, v)| {
        have.binary_search_by(|(hk, _)| (**hk).cmp(k.as_str()))
            .is_ok_and(|i| *have[i].1 == **v)
    })
}

impl OwnedSecret {
    /// What the cache keeps of `secret`; its data only as `key`'s MAC.
    pub fn project(secret: Secret, key: &MacKey) -> OwnedSecret {
        let type_ = type_name(secret.type_);
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let mac = key.mac(&type_, &data).into_boxed_str();
        let meta = secret.metadata;
        let mut labels = meta.labels.unwrap_or_default();
        // Another value of that label stays a label like any other.
        let managed = labels
            .get(MANAGED_BY_LABEL)
            .is_some_and(|v| v == MANAGED_BY_VALUE);
        if managed {
            labels.remove(MANAGED_BY_LABEL);
        }
        let mut annotations = meta.annotations.unwrap_or_default();
        annotations.remove(LAST_APPLIED);
        let (api_version, kind) = (
            <VaultSecret as Resource>::api_version(&()),
            <VaultSecret as Resource>::kind(&()),
        );
        let owners = meta
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.api_version == api_version && o.kind == kind)
            .map(|o| Owner {
                name: o.name.into_boxed_str(),
                uid: o.uid.into_boxed_str(),
                controller: o.controller == Some(true),
            })
            .collect();
        OwnedSecret {
            name: meta.name.unwrap_or_default().into_boxed_str(),
            namespace: meta.namespace.map(String::into_boxed_str),
            type_,
            mac,
            managed,
            labels: sorted(labels),
            annotations: sorted(annotations),
            owners,
        }
    }

    /// A watch event of Secrets as one of the cache.
    pub fn project_event(event: watcher::Event<Secret>, key: &MacKey) -> watcher::Event<Self> {
        use watcher::Event;
        match event {
            Event::Apply(s) => Event::Apply(Self::project(s, key)),
            Event::Delete(s) => Event::Delete(Self::project(s, key)),
            Event::Init => Event::Init,
            Event::InitApply(s) => Event::InitApply(Self::project(s, key)),
            Event::InitDone => Event::InitDone,
        }
    }

    /// The MAC of the Secret's type and data.
    pub fn mac(&self) -> &str {
        &self.mac
    }

    /// Whether the VaultSecret of `uid` is among the Secret's owners.
    pub fn owned_by(&self, uid: &str) -> bool {
        self.owners.iter().any(|o| *o.uid == *uid)
    }

    /// The VaultSecrets owning this Secret, to reconcile when it changes.
    pub fn owners(&self) -> impl Iterator<Item = ObjectRef<DeserializeGuard<VaultSecret>>> + '_ {
        self.owners.iter().map(|o| {
            let owner = ObjectRef::new(&o.name);
            match &self.namespace {
                Some(ns) => owner.within(ns),
                None => owner,
            }
        })
    }

    /// Whether the Secret already carries what applying `desired` would set besides the
    /// data: its type, every label and annotation of it, its controller owner references.
    /// `LAST_APPLIED` is not compared: the cache does not keep it, so a template setting
    /// it would otherwise look unapplied on every refresh and be re-applied forever.
    pub fn has_applied(&self, desired: &Secret) -> bool {
        let want_labels = desired.metadata.labels.iter().flatten();
        let managed_wanted = want_labels
            .clone()
            .any(|(k, v)| k == MANAGED_BY_LABEL && v == MANAGED_BY_VALUE);
        let other_labels = want_labels
            .filter(|(k, v)| !(k.as_str() == MANAGED_BY_LABEL && v.as_str() == MANAGED_BY_VALUE));
        let annotations = desired
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != LAST_APPLIED);
        *self.type_ == *desired.type_.as_deref().unwrap_or(DEFAULT_TYPE)
            && (self.managed || !managed_wanted)
            && holds(&self.labels, other_labels)
            && holds(&self.annotations, annotations)
            && desired
                .metadata
                .owner_references
                .iter()
                .flatten()
                .all(|want| {
                    self.owners
                        .iter()
                        .any(|o| *o.uid == *want.uid && o.controller)
                })
    }
}

impl Lookup for OwnedSecret {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        <Secret as Resource>::kind(&())
    }

    fn group(_: &()) -> Cow<'_, str> {
        <Secret as Resource>::group(&())
    }

    fn version(_: &()) -> Cow<'_, str> {
        <Secret as Resource>::version(&())
    }

    fn plural(_: &()) -> Cow<'_, str> {
        <Secret as Resource>::plural(&())
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        self.namespace.as_deref().map(Cow::Borrowed)
    }

    /// Not kept: the store's keys and the reconciler do without (one string less per key).
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta;

    fn owner(uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: <VaultSecret as Resource>::api_version(&()).into_owned(),
            kind: <VaultSecret as Resource>::kind(&()).into_owned(),
            name: "vs".into(),
            uid: uid.into(),
            controller: Some(controller),
            block_owner_deletion: Some(true),
        }
    }

    fn map(entries: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn keeps_a_mac_and_no_value() {
        let key = MacKey::new(&[7; 32]);
        let value = "hunter2-do-not-keep";
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("s".into()),
                namespace: Some("ns".into()),
                labels: map(&[(MANAGED_BY_LABEL, MANAGED_BY_VALUE)]),
                annotations: map(&[(LAST_APPLIED, &format!("{{\"data\":\"{value}\"}}"))]),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "password".to_owned(),
                ByteString(value.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        };
        let expected = key.mac(
            "Opaque",
            &BTreeMap::from([("password".to_owned(), value.as_bytes().to_vec())]),
        );
        let cached = OwnedSecret::project(secret, &key);
        assert_eq!(cached.mac(), expected);
        assert!(cached.managed && cached.labels.is_empty() && cached.annotations.is_empty());
        assert!(!format!("{cached:?}").contains(value));
        assert_eq!(cached.name(), Some(Cow::Borrowed("s")));
        assert_eq!(cached.namespace(), Some(Cow::Borrowed("ns")));
    }

    #[test]
    fn owners_are_the_vault_secrets_only() {
        let key = MacKey::new(&[7; 32]);
        let other = OwnerReference {
            kind: "ConfigMap".into(),
            api_version: "v1".into(),
            uid: "u-cm".into(),
            ..owner("x", true)
        };
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("s".into()),
                namespace: Some("ns".into()),
                owner_references: Some(vec![owner("u-1", true), other]),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        };
        let cached = OwnedSecret::project(secret, &key);
        assert!(cached.owned_by("u-1"));
        assert!(!cached.owned_by("u-cm"));
        let owners: Vec<_> = cached.owners().collect();
        assert_eq!(owners, [ObjectRef::new("vs").within("ns")]);
    }

    /// (cached labels, annotations, owner controller?, type) vs desired -> applied?
    #[test]
    fn applied_means_desired_metadata_is_there() {
        let key = MacKey::new(&[7; 32]);
        let secret = |labels: &[(&str, &str)],
                      annotations: &[(&str, &str)],
                      owners: Vec<OwnerReference>,
                      type_: Option<&str>| Secret {
            metadata: ObjectMeta {
                name: Some("s".into()),
                labels: map(labels),
                annotations: map(annotations),
                owner_references: Some(owners),
                ..ObjectMeta::default()
            },
            type_: type_.map(str::to_owned),
            ..Secret::default()
        };
        let managed = (MANAGED_BY_LABEL, MANAGED_BY_VALUE);
        let desired = secret(
            &[managed, ("team", "a")],
            &[("note", "x")],
            vec![owner("u-1", true)],
            Some("Opaque"),
        );
        let cases = [
            // exactly what was applied
            (
                secret(
                    &[managed, ("team", "a")],
                    &[("note", "x")],
                    vec![owner("u-1", true)],
                    Some("Opaque"),
                ),
                true,
            ),
            // more than applied (someone else's label): still applied
            (
                secret(
                    &[managed, ("team", "a"), ("z", "1")],
                    &[("a", "1"), ("note", "x")],
                    vec![owner("u-1", true)],
                    None,
                ),
                true,
            ),
            // a label missing, or with another value
            (
                secret(&[managed], &[("note", "x")], vec![owner("u-1", true)], None),
                false,
            ),
            (
                secret(
                    &[managed, ("team", "b")],
                    &[("note", "x")],
                    vec![owner("u-1", true)],
                    None,
                ),
                false,
            ),
            // the managed-by label gone or changed
            (
                secret(
                    &[("team", "a")],
                    &[("note", "x")],
                    vec![owner("u-1", true)],
                    None,
                ),
                false,
            ),
            (
                secret(
                    &[(MANAGED_BY_LABEL, "other"), ("team", "a")],
                    &[("note", "x")],
                    vec![owner("u-1", true)],
                    None,
                ),
                false,
            ),
            // an annotation missing
            (
                secret(
                    &[managed, ("team", "a")],
                    &[],
                    vec![owner("u-1", true)],
                    None,
                ),
                false,
            ),
            // owner not controller, or absent
            (
                secret(
                    &[managed, ("team", "a")],
                    &[("note", "x")],
                    vec![owner("u-1", false)],
                    None,
                ),
                false,
            ),
            (
                secret(&[managed, ("team", "a")], &[("note", "x")], vec![], None),
                false,
            ),
            // another type
            (
                secret(
                    &[managed, ("team", "a")],
                    &[("note", "x")],
                    vec![owner("u-1", true)],
                    Some("kubernetes.io/tls"),
                ),
                false,
            ),
        ];
        for (i, (found, applied)) in cases.into_iter().enumerate() {
            let cached = OwnedSecret::project(found, &key);
            assert_eq!(
                cached.has_applied(&desired),
                applied,
                "case {i}: {cached:?}"
            );
        }
    }

    #[test]
    fn last_applied_never_looks_unapplied() {
        let key = MacKey::new(&[7; 32]);
        let desired = Secret {
            metadata: ObjectMeta {
                annotations: map(&[(LAST_APPLIED, "{}")]),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        };
        let cached = OwnedSecret::project(desired.clone(), &key);
        assert!(cached.has_applied(&desired));
    }

    #[test]
    fn known_types_are_not_copied() {
        assert!(matches!(type_name(None), Cow::Borrowed("Opaque")));
        assert!(matches!(
            type_name(Some("kubernetes.io/tls".into())),
            Cow::Borrowed("kubernetes.io/tls")
        ));
        assert_eq!(type_name(Some("example.com/x".into())), "example.com/x");
    }
}
