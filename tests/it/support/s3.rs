//! In-process S3-protocol server (s3s + s3s-fs). OWNER: storage helper.
