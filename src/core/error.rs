//! The errors every layer shares. A setting is read by `app`, but checked wherever its
//! rule lives (privacy keys in `core`, receiver keys in `engine`), so the error that
//! names a bad setting is defined here, below all of them.

#[derive(Debug, thiserror::Error)]
#[error("setting {setting}: {reason}")]
pub struct ConfigError {
    /// The environment name (and file key) of the setting, or the file that failed.
    pub setting: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}

/// How a command fails, by exit status: 2 for input the user can fix (settings,
/// arguments, definitions), 1 for everything else. Defined here so that the engine's
/// long-running parts (receiver, metrics stream, compaction) can say which it was.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Failed(String),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Config(_) => 2,
            CommandError::Failed(_) => 1,
        }
    }
}

impl From<ConfigError> for CommandError {
    fn from(e: ConfigError) -> Self {
        CommandError::Config(e.to_string())
    }
}
