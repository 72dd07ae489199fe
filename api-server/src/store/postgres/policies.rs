//! Policies, bindings and identities in PostgreSQL: `policies`, `policy_bindings`
//! (deleted with their policy by `ON DELETE CASCADE`) and `identities`.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{PostgresStore, Tx, exec, get, query_opt};
use crate::store::policies::PolicyChange;
use crate::store::unit_of_work::Applied;
use crate::store::{
    BindingRow, IdentityRow, PolicyReads, PolicyRow, Result, StoreError, from_millis, to_millis,
};

const POLICY_COLUMNS: &str = "id, name, description, rules, created_at, updated_at";
const BINDING_COLUMNS: &str = "policy_id, identity_type, identity_id, created_at";
const IDENTITY_COLUMNS: &str = "id, identity_type, display_name, created_at";

fn policy_from_row(r: &Row) -> Result<PolicyRow> {
    Ok(PolicyRow {
        id: get(r, 0)?,
        name: get(r, 1)?,
        description: get(r, 2)?,
        rules_json: get(r, 3)?,
        created_at: from_millis(get(r, 4)?),
        updated_at: from_millis(get(r, 5)?),
    })
}

fn binding_from_row(r: &Row) -> Result<BindingRow> {
    Ok(BindingRow {
        policy_id: get(r, 0)?,
        identity_type: get(r, 1)?,
        identity_id: get(r, 2)?,
        created_at: from_millis(get(r, 3)?),
    })
}

fn identity_from_row(r: &Row) -> Result<IdentityRow> {
    Ok(IdentityRow {
        id: get(r, 0)?,
        identity_type: get(r, 1)?,
        display_name: get(r, 2)?,
        created_at: from_millis(get(r, 3)?),
    })
}

/// Applies one change inside the unit's transaction.
pub(super) async fn apply(c: &Tx<'_>, change: PolicyChange) -> Result<Applied> {
    match change {
        PolicyChange::CreatePolicy(p) => exec(
            c,
            "INSERT INTO policies (id, name, description, rules, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &p.id,
                &p.name,
                &p.description,
                &p.rules_json,
                &to_millis(p.created_at),
                &to_millis(p.updated_at),
            ],
        )
        .await
        .map(|_| Applied::Done),
        PolicyChange::UpdatePolicy(p) => exec(
            c,
            "UPDATE policies SET name = $2, description = $3, rules = $4, updated_at = $5 WHERE id = $1",
            &[&p.id, &p.name, &p.description, &p.rules_json, &to_millis(p.updated_at)],
        )
        .await
        .map(|n| Applied::Found(n > 0)),
        PolicyChange::DeletePolicy { id } => exec(c, "DELETE FROM policies WHERE id = $1", &[&id])
            .await
            .map(|n| Applied::Found(n > 0)),
        PolicyChange::AddBinding(b) => add_binding(c, b).await.map(|()| Applied::Done),
        PolicyChange::DeleteBinding {
            policy_id,
            identity_id,
        } => exec(
            c,
            "DELETE FROM policy_bindings WHERE policy_id = $1 AND identity_id = $2",
            &[&policy_id, &identity_id],
        )
        .await
        .map(|n| Applied::Found(n > 0)),
        PolicyChange::CreateIdentity(i) => exec(
            c,
            "INSERT INTO identities (id, identity_type, display_name, created_at) VALUES ($1, $2, $3, $4)",
            &[&i.id, &i.identity_type, &i.display_name, &to_millis(i.created_at)],
        )
        .await
        .map(|_| Applied::Done),
    }
}

async fn add_binding(c: &Tx<'_>, b: BindingRow) -> Result<()> {
    // FOR SHARE: a concurrent delete of the policy waits for this unit (or wins first).
    if query_opt(
        c,
        "SELECT 1 FROM policies WHERE id = $1 FOR SHARE",
        &[&b.policy_id],
    )
    .await?
    .is_none()
    {
        return Err(StoreError::NotFound);
    }
    exec(
        c,
        "INSERT INTO policy_bindings (policy_id, identity_type, identity_id, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (policy_id, identity_id) DO NOTHING",
        &[
            &b.policy_id,
            &b.identity_type,
            &b.identity_id,
            &to_millis(b.created_at),
        ],
    )
    .await
    .map(|_| ())
}

#[async_trait]
impl PolicyReads for PostgresStore {
    async fn get_policy(&self, id: &str) -> Result<Option<PolicyRow>> {
        let sql = format!("SELECT {POLICY_COLUMNS} FROM policies WHERE id = $1");
        self.row(&sql, &[&id], policy_from_row).await
    }

    async fn list_policies(&self) -> Result<Vec<PolicyRow>> {
        let sql = format!("SELECT {POLICY_COLUMNS} FROM policies ORDER BY name");
        self.rows(&sql, &[], policy_from_row).await
    }

    async fn list_bindings(&self, policy_id: Option<&str>) -> Result<Vec<BindingRow>> {
        let sql = format!(
            "SELECT {BINDING_COLUMNS} FROM policy_bindings \
             WHERE $1::TEXT IS NULL OR policy_id = $1 ORDER BY policy_id, identity_id"
        );
        self.rows(&sql, &[&policy_id], binding_from_row).await
    }

    async fn list_identities(&self) -> Result<Vec<IdentityRow>> {
        let sql = format!("SELECT {IDENTITY_COLUMNS} FROM identities ORDER BY id");
        self.rows(&sql, &[], identity_from_row).await
    }

    async fn get_identity(&self, id: &str) -> Result<Option<IdentityRow>> {
        let sql = format!("SELECT {IDENTITY_COLUMNS} FROM identities WHERE id = $1");
        self.row(&sql, &[&id], identity_from_row).await
    }
}
