//! The sobot-sync binary: exit codes, crash safety, concurrent runs. OWNER: cli-test helper.
