//! The baseline: the request sequence a backfill issues, at the same concurrency, with
//! every body read to bytes and dropped. What is left is HTTP, the simulator and the
//! scheduling; the end-to-end run adds JSON decoding, conversion, Parquet and state.

use super::BenchError;
use super::plan::{RangePlan, WindowPlan, pages};
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use sobot_sync::core::pipeline::Pipeline;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// How the engine is configured for the run being mirrored.
#[derive(Debug, Clone)]
pub struct Shape {
    /// `SOBOT_MAX_CONCURRENCY`: requests in flight, all windows together.
    pub max_concurrency: usize,
    /// `SOBOT_SYNC_WINDOW_CONCURRENCY`: windows extracted at once.
    pub window_concurrency: usize,
}

pub struct Replay {
    http: reqwest::Client,
    base: String,
    token: HeaderValue,
    timezone: HeaderValue,
    slots: Arc<Semaphore>,
    shape: Shape,
}

impl Replay {
    pub fn new(base: &str, token: &str, timezone: &str, shape: Shape) -> Result<Self, BenchError> {
        let header = |v: &str| {
            HeaderValue::from_str(v).map_err(|e| BenchError::Setup(format!("header {v:?}: {e}")))
        };
        // Configured like the product's client (gzip on), so only the work after the
        // body differs.
        let http = reqwest::Client::builder()
            .gzip(true)
            .build()
            .map_err(|e| BenchError::Setup(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: header(token)?,
            timezone: header(timezone)?,
            slots: Arc::new(Semaphore::new(shape.max_concurrency.max(1))),
            shape,
        })
    }

    /// A search pipeline's backfill: every window's pages, windows `window_concurrency` at once.
    pub async fn search(&self, p: &Pipeline, plan: &RangePlan) -> Result<(), BenchError> {
        futures::stream::iter(plan.windows.iter().map(|w| self.search_pages(p, w)))
            .buffered(self.shape.window_concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    /// A children pipeline's backfill: one GET per call of each window,
    /// `child_concurrency` at once (issue 15: its calls come from the talks table, so it
    /// lists no page of the parent).
    pub async fn children(
        &self,
        child: &Pipeline,
        parent: &Pipeline,
        plan: &RangePlan,
    ) -> Result<(), BenchError> {
        let placeholder = format!("{{{}}}", child.parent_field.as_deref().unwrap_or_default());
        let placeholder = placeholder.as_str();
        futures::stream::iter(
            plan.windows
                .iter()
                .map(|w| self.child_window(child, parent, placeholder, w)),
        )
        .buffered(self.shape.window_concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
    }

    async fn child_window(
        &self,
        child: &Pipeline,
        parent: &Pipeline,
        placeholder: &str,
        w: &WindowPlan,
    ) -> Result<(), BenchError> {
        let _ = parent;
        futures::stream::iter(w.call_ids.iter().map(|id| {
            let url = format!("{}{}", self.base, child.endpoint.replace(placeholder, id));
            async move { self.fetch(self.http.get(url), &child.endpoint).await }
        }))
        .buffer_unordered(child.child_concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
    }

    /// The pages of one window, one after another, with the body the engine sends.
    async fn search_pages(&self, p: &Pipeline, w: &WindowPlan) -> Result<(), BenchError> {
        let url = format!("{}{}", self.base, p.endpoint);
        for page in 1..=pages(w.talks, p.page_size) {
            let mut body = p.filters.clone();
            body.insert("startTime".into(), w.window.start.timestamp_millis().into());
            body.insert(
                "endTime".into(),
                (w.window.end.timestamp_millis() - 1).into(),
            );
            body.insert("pageNum".into(), page.into());
            body.insert("pageSize".into(), p.page_size.into());
            let bytes =
                serde_json::to_vec(&Value::Object(body)).map_err(|e| BenchError::Replay {
                    endpoint: p.endpoint.clone(),
                    detail: format!("encode body: {e}"),
                })?;
            let request = self
                .http
                .post(&url)
                .header(CONTENT_TYPE, "application/json;charset=utf-8")
                .body(bytes);
            self.fetch(request, &p.endpoint).await?;
        }
        Ok(())
    }

    /// Sends under a concurrency slot, insists on HTTP 200 and reads the whole body.
    async fn fetch(
        &self,
        request: reqwest::RequestBuilder,
        endpoint: &str,
    ) -> Result<(), BenchError> {
        let err = |detail: String| BenchError::Replay {
            endpoint: endpoint.to_string(),
            detail,
        };
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| err(format!("slots closed: {e}")))?;
        let response = request
            .header(AUTHORIZATION, self.token.clone())
            .header("timezoneid", self.timezone.clone())
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(err(format!("HTTP {status}")));
        }
        let body = response.bytes().await.map_err(|e| err(e.to_string()))?;
        drop(body);
        Ok(())
    }
}
