//! The audit log: who did what to which thing, written in the same transaction as the change.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, Set};
use uuid::Uuid;

use crate::store::audit_log;

pub async fn record(
    db: &impl ConnectionTrait,
    organization_id: Uuid,
    actor: &str,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<(), DbErr> {
    audit_log::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(organization_id),
        actor: Set(actor.to_string()),
        action: Set(action.to_string()),
        target: Set(target.to_string()),
        details: Set(details),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await
    .map(|_| ())
}
