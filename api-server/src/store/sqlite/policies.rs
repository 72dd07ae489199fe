//! Policies, bindings and identities in SQLite: `policies`, `policy_bindings` (deleted
//! with their policy by `ON DELETE CASCADE`) and `identities`.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteStore, all_rows, map_err, one_row};
use crate::store::policies::PolicyChange;
use crate::store::unit_of_work::Applied;
use crate::store::{
    BindingRow, IdentityRow, PolicyReads, PolicyRow, Result, StoreError, from_millis, to_millis,
};

const POLICY_COLUMNS: &str = "id, name, description, rules, created_at, updated_at";
const BINDING_COLUMNS: &str = "policy_id, identity_type, identity_id, created_at";
const IDENTITY_COLUMNS: &str = "id, identity_type, display_name, created_at";

fn policy_from_row(r: &Row<'_>) -> rusqlite::Result<PolicyRow> {
    Ok(PolicyRow {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        rules_json: r.get(3)?,
        created_at: from_millis(r.get(4)?),
        updated_at: from_millis(r.get(5)?),
    })
}

fn binding_from_row(r: &Row<'_>) -> rusqlite::Result<BindingRow> {
    Ok(BindingRow {
        policy_id: r.get(0)?,
        identity_type: r.get(1)?,
        identity_id: r.get(2)?,
        created_at: from_millis(r.get(3)?),
    })
}

fn identity_from_row(r: &Row<'_>) -> rusqlite::Result<IdentityRow> {
    Ok(IdentityRow {
        id: r.get(0)?,
        identity_type: r.get(1)?,
        display_name: r.get(2)?,
        created_at: from_millis(r.get(3)?),
    })
}

/// Applies one change inside the unit's transaction.
pub(super) fn apply(c: &Connection, change: PolicyChange) -> Result<Applied> {
    match change {
        PolicyChange::CreatePolicy(p) => c
            .execute(
                "INSERT INTO policies (id, name, description, rules, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![p.id, p.name, p.description, p.rules_json, to_millis(p.created_at), to_millis(p.updated_at)],
            )
            .map(|_| Applied::Done)
            .map_err(map_err),
        PolicyChange::UpdatePolicy(p) => c
            .execute(
                "UPDATE policies SET name = ?2, description = ?3, rules = ?4, updated_at = ?5 WHERE id = ?1",
                params![p.id, p.name, p.description, p.rules_json, to_millis(p.updated_at)],
            )
            .map(|n| Applied::Found(n > 0))
            .map_err(map_err),
        PolicyChange::DeletePolicy { id } => c
            .execute("DELETE FROM policies WHERE id = ?1", [id])
            .map(|n| Applied::Found(n > 0))
            .map_err(map_err),
        PolicyChange::AddBinding(b) => add_binding(c, b).map(|()| Applied::Done),
        PolicyChange::DeleteBinding {
            policy_id,
            identity_id,
        } => c
            .execute(
                "DELETE FROM policy_bindings WHERE policy_id = ?1 AND identity_id = ?2",
                params![policy_id, identity_id],
            )
            .map(|n| Applied::Found(n > 0))
            .map_err(map_err),
        PolicyChange::CreateIdentity(i) => c
            .execute(
                "INSERT INTO identities (id, identity_type, display_name, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![i.id, i.identity_type, i.display_name, to_millis(i.created_at)],
            )
            .map(|_| Applied::Done)
            .map_err(map_err),
    }
}

fn add_binding(c: &Connection, b: BindingRow) -> Result<()> {
    let exists: Option<i64> = c
        .query_row(
            "SELECT 1 FROM policies WHERE id = ?1",
            [&b.policy_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_err)?;
    if exists.is_none() {
        return Err(StoreError::NotFound);
    }
    c.execute(
        "INSERT INTO policy_bindings (policy_id, identity_type, identity_id, created_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(policy_id, identity_id) DO NOTHING",
        params![b.policy_id, b.identity_type, b.identity_id, to_millis(b.created_at)],
    )
    .map(|_| ())
    .map_err(map_err)
}

#[async_trait]
impl PolicyReads for SqliteStore {
    async fn get_policy(&self, id: &str) -> Result<Option<PolicyRow>> {
        let id = id.to_owned();
        self.read(move |c| {
            let sql = format!("SELECT {POLICY_COLUMNS} FROM policies WHERE id = ?1");
            one_row(c, &sql, [id], policy_from_row)
        })
        .await
    }

    async fn list_policies(&self) -> Result<Vec<PolicyRow>> {
        self.read(|c| {
            let sql = format!("SELECT {POLICY_COLUMNS} FROM policies ORDER BY name");
            all_rows(c, &sql, [], policy_from_row)
        })
        .await
    }

    async fn list_bindings(&self, policy_id: Option<&str>) -> Result<Vec<BindingRow>> {
        let policy_id = policy_id.map(str::to_owned);
        self.read(move |c| {
            let sql = format!(
                "SELECT {BINDING_COLUMNS} FROM policy_bindings \
                 WHERE ?1 IS NULL OR policy_id = ?1 ORDER BY policy_id, identity_id"
            );
            all_rows(c, &sql, [policy_id], binding_from_row)
        })
        .await
    }

    async fn list_identities(&self) -> Result<Vec<IdentityRow>> {
        self.read(|c| {
            let sql = format!("SELECT {IDENTITY_COLUMNS} FROM identities ORDER BY id");
            all_rows(c, &sql, [], identity_from_row)
        })
        .await
    }

    async fn get_identity(&self, id: &str) -> Result<Option<IdentityRow>> {
        let id = id.to_owned();
        self.read(move |c| {
            let sql = format!("SELECT {IDENTITY_COLUMNS} FROM identities WHERE id = ?1");
            one_row(c, &sql, [id], identity_from_row)
        })
        .await
    }
}
