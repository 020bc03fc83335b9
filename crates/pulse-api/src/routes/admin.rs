//! Admin actions, behind a bearer token, run as background jobs:
//! `POST /api/v1/admin/recompute` recomputes the batch layer's exact rollups (as `pulse
//! batch recompute`), `POST /api/v1/admin/replay` re-reads a topic range into a stage (as
//! `pulse replay`), and `GET /api/v1/admin/jobs/{id}` reports a job's progress and outcome.
//! One job of each kind runs at a time; the last [`KEPT`] jobs are remembered (in this
//! process only).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use pulse_batch::{RecomputeProgress, RecomputeReport};
use pulse_kafka::replay::{PartitionSpan, ReplayError, ReplayRange, ReplayStart};
use pulse_pipeline::replay::{ReplayFailure, ReplayProgress, ReplayReport};
use pulse_pipeline::StageKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Authorized;
use crate::params::{time, ObjectBody, Segment};
use crate::{ApiError, ApiState, ErrorBody};

/// Jobs remembered.
const KEPT: usize = 100;

/// What `POST /api/v1/admin/recompute` recomputes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecomputeRequest {
    /// Start (its whole day); default: the watermark, or the first month with posts.
    from: Option<String>,
    /// End, floored to the hour; default: the last hour that ended over 5 minutes ago (as
    /// `pulse batch recompute`), so the watermark never passes an hour still receiving posts.
    to: Option<String>,
}

/// What `POST /api/v1/admin/replay` replays: one of `from_offset` and `from_time`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The stage to replay into: `enrich`, `sink-speed`, `sink-batch` or `sink-archive`.
    into: String,
    /// Topic to read; default: the stage's input (raw for `enrich`, enriched for the sinks).
    topic: Option<String>,
    /// Start at this offset of every partition (negative: that many records before each
    /// partition's end), or at an offset per partition, `{"0": 12, "1": 40}` (a stopped
    /// job's `resume_at`; partitions not named are skipped).
    from_offset: Option<OffsetStart>,
    /// Start at the first record stamped at or after this time (RFC 3339, `now-2h`, ...).
    from_time: Option<String>,
    /// Stop before the first record stamped at or after this time; default: the topic's end
    /// when the replay begins.
    to_time: Option<String>,
}

/// Where a replay starts: one offset for every partition, or one per partition.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OffsetStart {
    Every(i64),
    /// Partition (as a JSON object key, a string) to offset.
    Each(BTreeMap<String, i64>),
}

impl OffsetStart {
    fn start(self) -> Result<ReplayStart, ApiError> {
        match self {
            OffsetStart::Every(offset) => Ok(ReplayStart::Offset(offset)),
            OffsetStart::Each(offsets) => offsets
                .into_iter()
                .map(|(partition, offset)| match partition.parse::<i32>() {
                    Ok(partition) => Ok((partition, offset)),
                    Err(_) => Err(ApiError::bad_parameter(format!(
                        "from_offset: {partition:?} is not a partition number"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(ReplayStart::Offsets),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum JobState {
    Running,
    Done,
    /// Ended early by the server's shutdown; the report says where it stopped.
    Stopped,
    Failed,
}

/// What a recompute job was asked for, defaults filled in.
#[derive(Debug, Clone, Serialize)]
struct RecomputeJob {
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
}

/// What a replay job was asked for, with the offsets it planned to read.
#[derive(Debug, Clone, Serialize)]
struct ReplayJob {
    into: StageKind,
    topic: String,
    from_offset: Option<OffsetStart>,
    from_time: Option<String>,
    to_time: Option<String>,
    spans: Vec<PartitionSpan>,
}

/// A job's kind with what it was asked, how far it is and what it did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum JobWork {
    Recompute {
        request: RecomputeJob,
        /// Null until the first (channel, day) is done.
        progress: Option<RecomputeProgress>,
        report: Option<RecomputeReport>,
    },
    Replay {
        request: ReplayJob,
        progress: ReplayProgress,
        report: Option<ReplayReport>,
    },
}

impl JobWork {
    fn kind(&self) -> &'static str {
        match self {
            JobWork::Recompute { .. } => "recompute",
            JobWork::Replay { .. } => "replay",
        }
    }
}

/// A background job as `GET /api/v1/admin/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    id: u64,
    #[serde(flatten)]
    work: JobWork,
    state: JobState,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

/// The jobs of this process.
#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<BTreeMap<u64, Job>>,
}

impl Jobs {
    /// Registers `work` as a running job; 409 while another one of its kind runs.
    fn start(&self, work: JobWork) -> Result<Job, ApiError> {
        let mut jobs = self.jobs.lock().map_err(|_| poisoned())?;
        let kind = work.kind();
        if let Some(running) = jobs
            .values()
            .find(|j| j.work.kind() == kind && j.state == JobState::Running)
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{kind} job {} is still running", running.id),
            ));
        }
        let id = jobs.keys().next_back().map_or(1, |last| last + 1);
        let job = Job {
            id,
            work,
            state: JobState::Running,
            started_at: Utc::now(),
            finished_at: None,
            error: None,
        };
        jobs.insert(id, job.clone());
        while jobs.len() > KEPT {
            jobs.pop_first();
        }
        Ok(job)
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut Job)) {
        if let Ok(mut jobs) = self.jobs.lock() {
            if let Some(job) = jobs.get_mut(&id) {
                change(job);
            }
        }
    }

    /// Records that job `id` ended in `state`, `record` writing its report.
    fn finish(&self, id: u64, state: JobState, record: impl FnOnce(&mut JobWork)) {
        self.update(id, |job| {
            job.state = state;
            job.finished_at = Some(Utc::now());
            record(&mut job.work);
        });
    }

    /// Records that job `id` failed with `error`.
    fn fail(&self, id: u64, error: impl std::fmt::Display) {
        tracing::warn!(job = id, %error, "job failed");
        self.update(id, |job| {
            job.state = JobState::Failed;
            job.finished_at = Some(Utc::now());
            job.error = Some(error.to_string());
        });
    }

    fn get(&self, id: u64) -> Result<Option<Job>, ApiError> {
        let jobs = self.jobs.lock().map_err(|_| poisoned())?;
        Ok(jobs.get(&id).cloned())
    }
}

fn poisoned() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the job table is unusable after a panic",
    )
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
    _: Authorized,
    ObjectBody(request): ObjectBody<RecomputeRequest>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let from = request
        .from
        .as_deref()
        .map(|t| time("from", t))
        .transpose()?;
    let to = match request.to.as_deref() {
        Some(to) => time("to", to)?,
        None => pulse_batch::settled_end(Utc::now()),
    };
    let job = state.jobs.start(JobWork::Recompute {
        request: RecomputeJob { from, to },
        progress: None,
        report: None,
    })?;
    let id = job.id;
    let jobs: Arc<Jobs> = state.jobs.clone();
    let batch = state.batch.clone();
    tokio::spawn(async move {
        let progress = |step: RecomputeProgress| {
            jobs.update(id, |job| {
                if let JobWork::Recompute { progress, .. } = &mut job.work {
                    *progress = Some(step);
                }
            })
        };
        match batch.recompute(from, to, &progress).await {
            Ok(done) => jobs.finish(id, JobState::Done, |work| {
                if let JobWork::Recompute { report, .. } = work {
                    *report = Some(done);
                }
            }),
            Err(error) => jobs.fail(id, error),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// A job's state, progress and outcome.
#[utoipa::path(get, path = "/api/v1/admin/jobs/{id}", tag = "admin",
    params(("id" = u64, Path, description = "the job's id")), security(("bearer" = [])), responses(
    (status = 200, description = "the job", content_type = "application/json"),
    (status = 401, description = "missing or wrong token", body = ErrorBody),
    (status = 404, description = "no such job (or forgotten)", body = ErrorBody)))]
pub async fn job(
    State(state): State<ApiState>,
    _: Authorized,
    Segment(id): Segment,
) -> Result<Json<Job>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_parameter(format!("job id {id:?} is not a number")))?;
    state
        .jobs
        .get(id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// Starts a replay job: the range is planned first (unknown topic: 404, broker down: 503),
/// then read into the stage in the background; 202 with the job and the planned offsets.
#[utoipa::path(post, path = "/api/v1/admin/replay", tag = "admin", request_body = ReplayRequest,
    security(("bearer" = [])), responses(
    (status = 202, description = "the job, running", content_type = "application/json"),
    (status = 400, description = "a bad stage, time or start", body = ErrorBody),
    (status = 401, description = "missing or wrong token", body = ErrorBody),
    (status = 404, description = "no such topic", body = ErrorBody),
    (status = 409, description = "a replay is already running", body = ErrorBody),
    (status = 503, description = "the broker is down, or this process cannot feed the stage", body = ErrorBody)))]
pub async fn replay(
    State(state): State<ApiState>,
    _: Authorized,
    ObjectBody(request): ObjectBody<ReplayRequest>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let stage: StageKind = request.into.parse().map_err(ApiError::bad_parameter)?;
    let start = match (request.from_offset.clone(), request.from_time.as_deref()) {
        (Some(offsets), None) => offsets.start()?,
        (None, Some(from)) => ReplayStart::Time(time("from_time", from)?),
        _ => {
            return Err(ApiError::bad_parameter(
                "give exactly one of from_offset and from_time",
            ))
        }
    };
    let end = request
        .to_time
        .as_deref()
        .map(|t| time("to_time", t))
        .transpose()?;
    let Some(replayer) = state.replayer.clone() else {
        return Err(ApiError::unavailable("this api process cannot replay"));
    };
    let topic = request
        .topic
        .clone()
        .unwrap_or_else(|| stage.input_topic(replayer.topics()).to_string());
    let range = ReplayRange {
        topic: topic.clone(),
        start,
        end,
    };
    let mut reader = replayer.open(stage, range).await.map_err(replay_error)?;
    let job = state.jobs.start(JobWork::Replay {
        request: ReplayJob {
            into: stage,
            topic,
            from_offset: request.from_offset,
            from_time: request.from_time,
            to_time: request.to_time,
            spans: reader.spans().to_vec(),
        },
        progress: ReplayProgress::default(),
        report: None,
    })?;
    let id = job.id;
    let jobs: Arc<Jobs> = state.jobs.clone();
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let progress = |done: ReplayProgress| {
            jobs.update(id, |job| {
                if let JobWork::Replay { progress, .. } = &mut job.work {
                    *progress = done;
                }
            })
        };
        match replayer.run(stage, &mut reader, &progress, &shutdown).await {
            Ok(done) => {
                let state = if done.complete {
                    JobState::Done
                } else {
                    JobState::Stopped
                };
                jobs.finish(id, state, |work| {
                    if let JobWork::Replay { report, .. } = work {
                        *report = Some(done);
                    }
                })
            }
            Err(error) => jobs.fail(id, error),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(job)))
}

fn replay_error(error: ReplayFailure) -> ApiError {
    match error {
        ReplayFailure::Read(ReplayError::UnknownTopic(_)) => ApiError::not_found(error.to_string()),
        ReplayFailure::Read(ReplayError::EndBeforeStart { .. }) => {
            ApiError::bad_parameter(error.to_string())
        }
        _ => ApiError::unavailable(error.to_string()),
    }
}
