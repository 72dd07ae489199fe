//! What the request did, gathered while it runs: the audit middleware opens a context,
//! authentication notes the caller, every authorization check notes its decision.

use std::cell::RefCell;

use scaivault_api::policy::Permission;

use crate::auth::Caller;

#[derive(Debug, Default)]
pub struct AuditContext {
    pub identity_id: Option<String>,
    pub identity_type: Option<String>,
    pub accessor: Option<String>,
    /// Every authorization decision: (permission, path, allowed).
    pub checks: Vec<(Permission, String, bool)>,
    /// Per-path HTTP-equivalent status of a multi-path request whose items can fail
    /// on their own (a batch read's missing secret is a 404 inside a 200).
    pub item_statuses: Vec<(String, u16)>,
    /// `seq` of the request record a mutating request wrote before its handler ran.
    pub request_seq: Option<u64>,
    /// Why the caller made the request, when it said (a forced rotation's reason).
    pub reason: Option<String>,
}

tokio::task_local! {
    pub static AUDIT: RefCell<AuditContext>;
}

/// Outside an audited request these are no-ops.
pub fn note_caller(caller: &Caller) {
    let _ = AUDIT.try_with(|ctx| {
        let mut ctx = ctx.borrow_mut();
        ctx.identity_id = Some(caller.identity_id.clone());
        ctx.identity_type = Some(caller.identity_type.as_str().to_owned());
        ctx.accessor = Some(caller.accessor.clone());
    });
}

pub fn note_check(permission: Permission, path: &str, allowed: bool) {
    let _ = AUDIT.try_with(|ctx| {
        ctx.borrow_mut()
            .checks
            .push((permission, path.to_owned(), allowed))
    });
}

/// Notes why the caller made the request; it goes into the response record.
pub fn note_reason(reason: &str) {
    let _ = AUDIT.try_with(|ctx| ctx.borrow_mut().reason = Some(reason.to_owned()));
}

/// Notes the `seq` of the request record, so the response record can link to it.
pub fn note_request_seq(seq: u64) {
    let _ = AUDIT.try_with(|ctx| ctx.borrow_mut().request_seq = Some(seq));
}

/// The caller as noted so far: (identity id, identity type, accessor).
pub fn noted_caller() -> (Option<String>, Option<String>, Option<String>) {
    AUDIT
        .try_with(|ctx| {
            let ctx = ctx.borrow();
            (
                ctx.identity_id.clone(),
                ctx.identity_type.clone(),
                ctx.accessor.clone(),
            )
        })
        .unwrap_or_default()
}

/// Records that one path of a multi-path request ended with `status`.
pub fn note_item_status(path: &str, status: u16) {
    let _ = AUDIT.try_with(|ctx| {
        ctx.borrow_mut()
            .item_statuses
            .push((path.to_owned(), status))
    });
}
