//! Store, sink and state against local files and in-process S3. OWNER: storage helper.
