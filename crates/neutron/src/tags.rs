//! Tags (extension `standard-attr-tag`): a list of strings on any record,
//! set one at a time (`PUT .../tags/TAG`, no body, as kuryr sends it) or
//! as a whole; lists filter on them (`tags`, `tags-any`, `not-tags`,
//! `not-tags-any`).

use crate::Shared;
use crate::error::NeutronError;
use crate::record::{self, Record, blocking, find, touched};
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cluster::App;
use serde_json::{Value, json};
use std::sync::Arc;

/// Neutron's longest tag.
const MAX_TAG: usize = 255;

fn tags_of<R: Record>(r: &R) -> Vec<String> {
    r.fields()
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect()
}

fn checked(t: &str) -> Result<String, NeutronError> {
    if t.is_empty() || t.len() > MAX_TAG || t.contains(',') {
        return Err(NeutronError::bad_request(format!(
            "Invalid input for operation: '{t}' is not a valid tag (1 to {MAX_TAG} characters, no comma)."
        )));
    }
    Ok(t.to_string())
}

/// The body's `tags` list, each checked.
fn body_tags(body: &[u8]) -> Result<Vec<String>, NeutronError> {
    let v = record::parse(body)?;
    let list = v.get("tags").and_then(Value::as_array).ok_or_else(|| {
        NeutronError::bad_request("Invalid input for tags: a body {\"tags\": [...]} is needed.")
    })?;
    list.iter()
        .map(|t| {
            t.as_str()
                .ok_or_else(|| NeutronError::bad_request(format!("Invalid tag {t}")))
                .and_then(checked)
        })
        .collect()
}

/// Changes record `id`'s tags with `f`, one write; the tags after.
async fn change<R: Record + Send + 'static>(
    app: Arc<App>,
    id: String,
    mut f: impl FnMut(&mut Vec<String>) -> Result<(), NeutronError> + Send + 'static,
) -> Result<Vec<String>, NeutronError> {
    blocking(move || {
        let mut r = find::<R>(&app, &id)?;
        let mut tags = tags_of(&r);
        f(&mut tags)?;
        r.fields_mut().insert("tags".into(), json!(tags));
        touched(&mut r);
        record::write(&app, |w| {
            w.tx.put(&r);
            Ok(())
        })?;
        Ok(tags)
    })
    .await
}

fn listed(status: StatusCode, done: Result<Vec<String>, NeutronError>) -> Response {
    match done {
        Ok(t) => crate::reply(status, json!({ "tags": t })),
        Err(e) => e.into_response(),
    }
}

fn empty(status: StatusCode, done: Result<Vec<String>, NeutronError>) -> Response {
    match done {
        Ok(_) => status.into_response(),
        Err(e) => e.into_response(),
    }
}

fn tag_not_found(tag: &str) -> NeutronError {
    NeutronError::not_found("TagNotFound", format!("Tag {tag} could not be found."))
}

async fn all<R: Record>(state: Shared, Path(id): Path<String>) -> Response {
    listed(
        StatusCode::OK,
        find::<R>(&state.0, &id).map(|r| tags_of(&r)),
    )
}

async fn replace<R: Record + Send + 'static>(
    state: Shared,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let new = match body_tags(&body) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    listed(
        StatusCode::OK,
        change::<R>(state.0, id, move |t| {
            *t = new.clone();
            t.dedup();
            Ok(())
        })
        .await,
    )
}

async fn add_all<R: Record + Send + 'static>(
    state: Shared,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let new = match body_tags(&body) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    listed(
        StatusCode::CREATED,
        change::<R>(state.0, id, move |t| {
            for n in new.clone() {
                if !t.contains(&n) {
                    t.push(n);
                }
            }
            Ok(())
        })
        .await,
    )
}

async fn remove_all<R: Record + Send + 'static>(state: Shared, Path(id): Path<String>) -> Response {
    empty(
        StatusCode::NO_CONTENT,
        change::<R>(state.0, id, |t| {
            t.clear();
            Ok(())
        })
        .await,
    )
}

async fn has<R: Record>(state: Shared, Path((id, tag)): Path<(String, String)>) -> Response {
    match find::<R>(&state.0, &id) {
        Ok(r) if tags_of(&r).contains(&tag) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => tag_not_found(&tag).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn add<R: Record + Send + 'static>(
    state: Shared,
    Path((id, tag)): Path<(String, String)>,
) -> Response {
    let tag = match checked(&tag) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    empty(
        StatusCode::CREATED,
        change::<R>(state.0, id, move |t| {
            if !t.contains(&tag) {
                t.push(tag.clone());
            }
            Ok(())
        })
        .await,
    )
}

async fn remove<R: Record + Send + 'static>(
    state: Shared,
    Path((id, tag)): Path<(String, String)>,
) -> Response {
    empty(
        StatusCode::NO_CONTENT,
        change::<R>(state.0, id, move |t| {
            let before = t.len();
            t.retain(|x| *x != tag);
            if t.len() == before {
                return Err(tag_not_found(&tag));
            }
            Ok(())
        })
        .await,
    )
}

/// The tag routes of collection `coll` (its URL name) over records `R`.
pub fn routes<R: Record + Send + Sync + 'static>(
    router: Router<Arc<App>>,
    coll: &str,
) -> Router<Arc<App>> {
    router
        .route(
            &format!("/v2.0/{coll}/{{id}}/tags"),
            get(all::<R>)
                .put(replace::<R>)
                .post(add_all::<R>)
                .delete(remove_all::<R>),
        )
        .route(
            &format!("/v2.0/{coll}/{{id}}/tags/{{tag}}"),
            get(has::<R>).put(add::<R>).delete(remove::<R>),
        )
}
