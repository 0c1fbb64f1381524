//! Statistical reports: indicator catalogues, report periods, requests and responses.

pub mod indicators;
pub mod period;
pub mod reconcile;
pub mod request;
pub mod response;
pub mod settle;
pub mod spec;
