//! End-to-end runs against the simulator, local files and S3. OWNER: e2e helper.
