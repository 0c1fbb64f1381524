//! The Statistical Report searches: Relay Number Report (`gateway-number-table`), Agent
//! Report (`agent-table`) and Department Report (`depart-table`).
//!
//! Figures are aggregated from the same talks, parties and agent histories the data
//! endpoints serve (plus restatements, see `facts.rs`), one period at a time: a query
//! over months keeps only the current period's accumulators, the running `amount`, and
//! the rows of the requested page. The server and the `Dataset::report` ground truth run
//! this same code; tests that want an independent check recompute figures straight from
//! `Dataset::talks` and `Dataset::agent_histories` (see `tests/it/sim_reports.rs`).
//!
//! How indicators derive from the data (all counts by the talk's start time, all
//! durations integer seconds summed per record, so row sums are exact):
//! - relay numbers: talks of that `gatewayNumber`; answered = callResult 8; system
//!   missed = inbound callResult 4; offered to an agent = the talk has agent legs;
//!   "Xs" = talk of at least 30 s.
//! - agents: the agent's legs (parties); answered = the leg has a bridge time; direct =
//!   the first leg, transfer = later legs; status durations = each visible interval's
//!   overlap with the period in whole-second clock ticks (`floor(end/1000) -
//!   floor(start/1000)` of the clipped interval, so half hours add up to their day
//!   exactly); first login / first ready / last
//!   logout = the earliest start of a logged-in / ready interval and the latest start of
//!   an offline interval within the period (epoch ms, `""` when none).
//! - departments: the sum of their agents' accumulators.
//! - averages and ratios are computed from the sums (0 when nothing to divide by), also
//!   in `amount`, whose counters and durations are the sums over all rows.
//!
//! Indicators the data cannot support (routing to third-party numbers or agent memory,
//! non-human answers, consultations, system lock) are 0.

mod agent;
mod assemble;
mod endpoints;
mod gateway;
mod query;
mod values;

pub use assemble::ReportTable;
pub(crate) use endpoints::{agents, departments, gateway_numbers};
pub use query::ReportQuery;
