//! Admin actions, behind a bearer token: `POST /api/v1/admin/recompute` starts a recompute
//! of the batch layer's exact rollups (as `pulse batch recompute`) as a background job, and
//! `GET /api/v1/admin/jobs/{id}` reports a job's progress and outcome. One recompute runs
//! at a time; the last [`KEPT`] jobs are remembered (in this process only).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use pulse_batch::RecomputeProgress;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::require_token;
use crate::params::{time, Body};
use crate::{ApiError, ApiState, ErrorBody};

/// Jobs remembered.
const KEPT: usize = 100;

/// What `POST /api/v1/admin/recompute` recomputes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecomputeRequest {
    /// Start (its whole day); default: the watermark, or the first month with posts.
    from: Option<String>,
    /// End, floored to the hour; default `now`.
    to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum JobState {
    Running,
    Done,
    Failed,
}

/// A background job as `GET /api/v1/admin/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
struct Job {
    id: u64,
    kind: &'static str,
    state: JobState,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    /// (channel, day) pairs to recompute and done, posts read so far.
    days_total: usize,
    days_done: usize,
    posts: u64,
    report: Option<Value>,
    error: Option<String>,
}

/// The jobs of this process.
#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<BTreeMap<u64, Job>>,
}

impl Jobs {
    fn update(&self, id: u64, change: impl FnOnce(&mut Job)) {
        if let Ok(mut jobs) = self.jobs.lock() {
            if let Some(job) = jobs.get_mut(&id) {
                change(job);
            }
        }
    }
}

fn locked_jobs(jobs: &Jobs) -> Result<std::sync::MutexGuard<'_, BTreeMap<u64, Job>>, ApiError> {
    jobs.jobs.lock().map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the job table is unusable after a panic",
        )
    })
}

/// Starts a recompute job; 202 with the job, 409 while another recompute runs.
#[utoipa::path(post, path = "/api/v1/admin/recompute", tag = "admin", request_body = RecomputeRequest,
    security(("bearer" = [])), responses(
    (status = 202, description = "the job, running", content_type = "application/json"),
    (status = 400, description = "a bad time", body = ErrorBody),
    (status = 401, description = "missing or wrong token", body = ErrorBody),
    (status = 409, description = "a recompute is already running", body = ErrorBody)))]
pub async fn recompute(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Body(request): Body<RecomputeRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_token(&state.config.tokens, &headers)?;
    let from = request
        .from
        .as_deref()
        .map(|t| time("from", t))
        .transpose()?;
    let to = time("to", request.to.as_deref().unwrap_or("now"))?;
    let job = {
        let mut jobs = locked_jobs(&state.jobs)?;
        if let Some(running) = jobs.values().find(|j| j.state == JobState::Running) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("recompute job {} is still running", running.id),
            ));
        }
        let id = jobs.keys().next_back().map_or(1, |last| last + 1);
        let job = Job {
            id,
            kind: "recompute",
            state: JobState::Running,
            started_at: Utc::now(),
            finished_at: None,
            days_total: 0,
            days_done: 0,
            posts: 0,
            report: None,
            error: None,
        };
        jobs.insert(id, job.clone());
        while jobs.len() > KEPT {
            jobs.pop_first();
        }
        job
    };
    let id = job.id;
    let jobs: Arc<Jobs> = state.jobs.clone();
    let batch = state.batch.clone();
    tokio::spawn(async move {
        let progress = |step: RecomputeProgress| {
            jobs.update(id, |job| {
                job.days_total = step.days_total;
                job.days_done = step.days_done;
                job.posts = step.posts;
            })
        };
        let outcome = batch.recompute(from, to, &progress).await;
        jobs.update(id, |job| {
            job.finished_at = Some(Utc::now());
            match outcome {
                Ok(report) => {
                    job.state = JobState::Done;
                    job.posts = report.posts;
                    job.report = Some(json!({
                        "from": report.from,
                        "to": report.to,
                        "channel_days": report.channel_days,
                        "hours": report.hours,
                        "posts": report.posts,
                        "watermark_before": report.watermark_before,
                        "watermark": report.watermark,
                    }));
                }
                Err(error) => {
                    tracing::warn!(job = id, %error, "recompute job failed");
                    job.state = JobState::Failed;
                    job.error = Some(error.to_string());
                }
            }
        });
    });
    Ok((StatusCode::ACCEPTED, Json(json!(job))))
}

/// A job's state, progress and outcome.
#[utoipa::path(get, path = "/api/v1/admin/jobs/{id}", tag = "admin",
    params(("id" = u64, Path, description = "the job's id")), security(("bearer" = [])), responses(
    (status = 200, description = "the job", content_type = "application/json"),
    (status = 401, description = "missing or wrong token", body = ErrorBody),
    (status = 404, description = "no such job (or forgotten)", body = ErrorBody)))]
pub async fn job(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_token(&state.config.tokens, &headers)?;
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_parameter(format!("job id {id:?} is not a number")))?;
    let jobs = locked_jobs(&state.jobs)?;
    jobs.get(&id)
        .map(|job| Json(json!(job)))
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}
