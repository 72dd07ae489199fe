//! `/v1/policies`, bindings, the what-if test, and `/v1/identities`.

use reqwest::Method;
use scaivault_api::ErrorCode;
use scaivault_api::auth::identity_type_of;
use scaivault_api::policy::{
    Binding, BindingInput, Identity, IdentityInput, ListBindingsResponse, ListIdentitiesResponse,
    ListPoliciesResponse, Policy, PolicyInput, PolicyTestRequest, PolicyTestResponse,
};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::paging::{PageOptions, collect_all};
use crate::retry::Retry;

impl Client {
    /// Creates a policy (`201`). Retried with its `Idempotency-Key`: a repeat after a lost
    /// answer gets the first `201` back, not `409 conflict` on the name.
    pub async fn create_policy(&self, input: &PolicyInput) -> Result<Policy> {
        let url = self.url(["policies"])?;
        let call = self
            .call(Method::POST, url, Retry::Keyed, "create_policy")
            .body(input)?;
        self.json(call).await
    }

    /// Every policy, or with `path` only those with a rule whose pattern matches it
    /// (all pages: `next_cursor` is `None`).
    pub async fn list_policies(&self, path: Option<&str>) -> Result<ListPoliciesResponse> {
        let policies = collect_all("list_policies", |page| async move {
            let r = self.list_policies_page(path, &page).await?;
            Ok((r.policies, r.next_cursor))
        })
        .await?;
        Ok(ListPoliciesResponse {
            policies,
            next_cursor: None,
        })
    }

    /// One page of [`Client::list_policies`], by name.
    pub async fn list_policies_page(
        &self,
        path: Option<&str>,
        page: &PageOptions,
    ) -> Result<ListPoliciesResponse> {
        let url = self.url(["policies"])?;
        let mut query = page.query()?;
        if let Some(p) = path {
            query.push(("path", p.to_owned()));
        }
        let call = self
            .call(Method::GET, url, Retry::Safe, "list_policies")
            .query(&query);
        self.json(call).await
    }

    pub async fn get_policy(&self, id: &str) -> Result<Policy> {
        let url = self.url(["policies", check_id("policy id", id)?])?;
        self.json(self.call(Method::GET, url, Retry::Safe, "get_policy"))
            .await
    }

    /// Replaces the name, description and rules (`PUT`: fields left out are cleared).
    /// Retried: replacing twice with the same document is the same as once.
    pub async fn update_policy(&self, id: &str, input: &PolicyInput) -> Result<Policy> {
        let url = self.url(["policies", check_id("policy id", id)?])?;
        let call = self
            .call(Method::PUT, url, Retry::Keyed, "update_policy")
            .body(input)?;
        self.json(call).await
    }

    /// Deletes a policy and its bindings.
    pub async fn delete_policy(&self, id: &str) -> Result<()> {
        let url = self.url(["policies", check_id("policy id", id)?])?;
        self.no_content(self.call(Method::DELETE, url, Retry::Keyed, "delete_policy"))
            .await
    }

    /// Binds a policy to an identity; the identity type is derived from the id's prefix
    /// (`user:`, `sa:`, `k8s:`). Retried with its `Idempotency-Key`, like every mutation.
    pub async fn bind_policy(&self, policy_id: &str, identity_id: &str) -> Result<Binding> {
        let identity_type = identity_type_of(identity_id)
            .map_err(|e| Error::invalid(ErrorCode::InvalidRequest, e.to_string()))?;
        let input = BindingInput {
            identity_type,
            identity_id: identity_id.to_owned(),
        };
        self.bind_policy_with(policy_id, &input).await
    }

    /// [`Client::bind_policy`] with the binding document spelled out.
    pub async fn bind_policy_with(&self, policy_id: &str, input: &BindingInput) -> Result<Binding> {
        let url = self.url(["policies", check_id("policy id", policy_id)?, "bindings"])?;
        let call = self
            .call(Method::POST, url, Retry::Keyed, "bind_policy")
            .body(input)?;
        self.json(call).await
    }

    /// The identities a policy is bound to (all pages: `next_cursor` is `None`).
    pub async fn policy_bindings(&self, policy_id: &str) -> Result<ListBindingsResponse> {
        let bindings = collect_all("policy_bindings", |page| async move {
            let r = self.policy_bindings_page(policy_id, &page).await?;
            Ok((r.bindings, r.next_cursor))
        })
        .await?;
        Ok(ListBindingsResponse {
            bindings,
            next_cursor: None,
        })
    }

    /// One page of [`Client::policy_bindings`], by identity id.
    pub async fn policy_bindings_page(
        &self,
        policy_id: &str,
        page: &PageOptions,
    ) -> Result<ListBindingsResponse> {
        let url = self.url(["policies", check_id("policy id", policy_id)?, "bindings"])?;
        let call = self
            .call(Method::GET, url, Retry::Safe, "policy_bindings")
            .query(&page.query()?);
        self.json(call).await
    }

    /// Removes a binding; `404 not_found` when the identity is not bound.
    pub async fn unbind_policy(&self, policy_id: &str, identity_id: &str) -> Result<()> {
        let policy_id = check_id("policy id", policy_id)?;
        let segments = identity_segments(identity_id)?;
        let url = self.url(
            ["policies", policy_id, "bindings"]
                .into_iter()
                .chain(segments),
        )?;
        self.no_content(self.call(Method::DELETE, url, Retry::Keyed, "unbind_policy"))
            .await
    }

    /// What-if: would the identity (and/or a draft policy) hold `permission` on `path`?
    /// Changes nothing, so it is retried like a read.
    pub async fn test_policy(&self, request: &PolicyTestRequest) -> Result<PolicyTestResponse> {
        let url = self.url(["policies", "test"])?;
        let call = self
            .call(Method::POST, url, Retry::Safe, "test_policy")
            .body(request)?;
        self.json(call).await
    }

    /// Registers an identity. Retried with its `Idempotency-Key`: a repeat after a lost
    /// answer gets the first `201` back, not `409 conflict`.
    pub async fn create_identity(&self, input: &IdentityInput) -> Result<Identity> {
        identity_segments(&input.id)?;
        let url = self.url(["identities"])?;
        let call = self
            .call(Method::POST, url, Retry::Keyed, "create_identity")
            .body(input)?;
        self.json(call).await
    }

    /// Every registered identity (all pages: `next_cursor` is `None`).
    pub async fn list_identities(&self) -> Result<ListIdentitiesResponse> {
        let identities = collect_all("list_identities", |page| async move {
            let r = self.list_identities_page(&page).await?;
            Ok((r.identities, r.next_cursor))
        })
        .await?;
        Ok(ListIdentitiesResponse {
            identities,
            next_cursor: None,
        })
    }

    /// One page of [`Client::list_identities`], by id.
    pub async fn list_identities_page(&self, page: &PageOptions) -> Result<ListIdentitiesResponse> {
        let url = self.url(["identities"])?;
        let call = self
            .call(Method::GET, url, Retry::Safe, "list_identities")
            .query(&page.query()?);
        self.json(call).await
    }

    /// One identity with the ids of the policies bound to it.
    pub async fn get_identity(&self, id: &str) -> Result<Identity> {
        let segments = identity_segments(id)?;
        let url = self.url(std::iter::once("identities").chain(segments))?;
        self.json(self.call(Method::GET, url, Retry::Safe, "get_identity"))
            .await
    }
}

/// Server-issued ids (`pol_...`, `exp_...`) are simple; anything else gets a clear error
/// instead of a 404.
pub(crate) fn check_id<'a>(what: &str, id: &'a str) -> Result<&'a str> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(id)
    } else {
        Err(Error::invalid(
            ErrorCode::InvalidRequest,
            format!("a {what} is 1..=128 characters of [A-Za-z0-9_-]"),
        ))
    }
}

/// An identity id as URL path segments. The server routes identities with a wildcard, so
/// `k8s:ns/sa` travels as the two segments `k8s:ns` and `sa` (`:`, `@` and `+` need no
/// escaping in a path). The id must be `root` or follow the identity grammar, which also
/// keeps `.`/`..` segments (that URL building would drop) out.
pub(crate) fn identity_segments(id: &str) -> Result<std::str::Split<'_, char>> {
    if id != "root" {
        identity_type_of(id)
            .map_err(|e| Error::invalid(ErrorCode::InvalidRequest, e.to_string()))?;
    }
    if id.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(Error::invalid(
            ErrorCode::InvalidRequest,
            format!("identity id {id:?} has an empty, '.' or '..' segment"),
        ));
    }
    Ok(id.split('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Option<Client> {
        Client::builder("http://127.0.0.1:8200").build().ok()
    }

    fn identity_url(id: &str) -> Option<String> {
        let c = client()?;
        let segments = identity_segments(id).ok()?;
        c.url(
            ["policies", "pol_1", "bindings"]
                .into_iter()
                .chain(segments),
        )
        .ok()
        .map(|u| u.to_string())
    }

    #[test]
    fn identity_ids_travel_unescaped_as_segments() {
        let base = "http://127.0.0.1:8200/v1/policies/pol_1/bindings/";
        for (id, tail) in [
            ("sa:billing-prod", "sa:billing-prod"),
            ("user:alice+ops@acme.example", "user:alice+ops@acme.example"),
            ("k8s:payments/api", "k8s:payments/api"),
            ("root", "root"),
        ] {
            assert_eq!(identity_url(id), Some(format!("{base}{tail}")), "{id}");
        }
    }

    #[test]
    fn odd_identity_ids_are_refused_before_sending() {
        for bad in [
            "",
            "billing",
            "sa:",
            "sa:a/b",
            "k8s:ns/..",
            "k8s:ns/",
            "user:a b@c",
            "user:a?x=1",
            "k8s:a/b/c",
        ] {
            assert!(identity_segments(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_ids() {
        assert_eq!(
            check_id("policy id", "pol_33062f53-x").ok(),
            Some("pol_33062f53-x")
        );
        for bad in ["", "pol/1", "../x", "pol 1", "pol?x"] {
            assert!(check_id("policy id", bad).is_err(), "{bad}");
        }
    }
}
