//! Settings of `sobot-sync receive` (issue 5, CONTRACT section 7), read by the shared
//! loader in `crate::app::settings` and parsed here so the receiver's rules live with it.
//!
//! Nothing here is required at load time: other commands never need the app key or the
//! company list, so [`ReceiveSettings::require`] checks them when `receive` starts.

use crate::core::error::ConfigError;
use crate::core::push::cipher::{AesKey, CipherMode};
use crate::core::secret::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Environment names (the TOML keys are the same without `SOBOT_`, in lower case).
pub const APP_KEY: &str = "SOBOT_PUSH_APP_KEY";
pub const MAX_SKEW: &str = "SOBOT_PUSH_MAX_SKEW_SECS";
pub const COMPANY_IDS: &str = "SOBOT_PUSH_COMPANY_IDS";
pub const AES_KEY: &str = "SOBOT_PUSH_AES_KEY";
pub const CIPHER: &str = "SOBOT_PUSH_CIPHER";
pub const ADDR: &str = "SOBOT_SYNC_RECEIVE_ADDR";
pub const WAL: &str = "SOBOT_SYNC_RECEIVE_WAL";
pub const FLUSH_ROWS: &str = "SOBOT_SYNC_RECEIVE_FLUSH_ROWS";
pub const FLUSH_SECS: &str = "SOBOT_SYNC_RECEIVE_FLUSH_SECS";
pub const MAX_BODY: &str = "SOBOT_SYNC_RECEIVE_MAX_BODY_BYTES";

/// 2 MiB: far above one record's push, and the limit the HTTP layer applied before
/// the limit became a setting.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 2 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ReceiveSettings {
    /// The key Sobot's message forwarding signs with (`X-Log-Sign`).
    pub app_key: Option<Secret>,
    /// How far `X-Log-TimeStamp` may be from our clock, and how long a random code is
    /// remembered for replay detection (the two must be equal: a code forgotten earlier
    /// could be replayed while its timestamp is still accepted).
    pub max_skew: Duration,
    /// Companies whose pushes are accepted (trimmed ids).
    pub company_ids: Vec<String>,
    /// Key of encrypted bodies; `None`: encrypted bodies are refused (400, dead letter).
    pub aes_key: Option<AesKey>,
    pub cipher: CipherMode,
    pub addr: SocketAddr,
    /// Folder of the write-ahead log (local disk).
    pub wal_dir: PathBuf,
    /// A table's pending rows are flushed to Parquet once this many have arrived...
    pub flush_rows: usize,
    /// ...or once the oldest pending push is this old.
    pub flush_interval: Duration,
    /// Bodies larger than this are refused (413) without being kept: reading them whole
    /// is what a dead letter needs, and memory must stay bounded under any sender.
    pub max_body_bytes: usize,
}

impl ReceiveSettings {
    /// Parses the receiver's settings. `get` gives a setting's trimmed, non-empty value;
    /// `err` builds the error naming the setting and where it came from.
    pub fn parse(
        get: &dyn Fn(&str) -> Option<String>,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        let positive = |k: &str, default: u64| -> Result<u64, ConfigError> {
            match get(k) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(err(
                        k,
                        format!("must be a positive whole number, got {v:?}"),
                    )),
                },
            }
        };
        let cipher = match get(CIPHER) {
            None => CipherMode::default(),
            Some(v) => v.parse().map_err(|why| err(CIPHER, why))?,
        };
        let aes_key = match get(AES_KEY) {
            None => None,
            // The message never shows the key, only what is wrong with its length.
            Some(v) => Some(AesKey::parse(&v).map_err(|why| err(AES_KEY, why))?),
        };
        let addr = match get(ADDR) {
            None => SocketAddr::from(([0, 0, 0, 0], 8780)),
            Some(v) => v.parse().map_err(|_| {
                err(
                    ADDR,
                    format!("must be an IP address and port such as 0.0.0.0:8780, got {v:?}"),
                )
            })?,
        };
        let company_ids = get(COMPANY_IDS)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            app_key: get(APP_KEY).map(Secret::new),
            max_skew: Duration::from_secs(positive(MAX_SKEW, 300)?),
            company_ids,
            aes_key,
            cipher,
            addr,
            wal_dir: PathBuf::from(get(WAL).unwrap_or_else(|| "./receive-wal".into())),
            flush_rows: positive(FLUSH_ROWS, 50_000)? as usize,
            flush_interval: Duration::from_secs(positive(FLUSH_SECS, 60)?),
            max_body_bytes: usize::try_from(positive(MAX_BODY, DEFAULT_MAX_BODY_BYTES)?)
                .map_err(|_| err(MAX_BODY, "is larger than this machine can address".into()))?,
        })
    }

    /// What `receive` cannot start without: the app key and at least one company.
    pub fn require(&self) -> Result<(&Secret, &[String]), ConfigError> {
        let key = self.app_key.as_ref().ok_or_else(|| {
            ConfigError::new(APP_KEY, "receive needs the app key Sobot signs pushes with")
        })?;
        if self.company_ids.is_empty() {
            return Err(ConfigError::new(
                COMPANY_IDS,
                "receive needs the company ids whose pushes it accepts (comma-separated)",
            ));
        }
        Ok((key, &self.company_ids))
    }
}

#[cfg(test)]
mod tests {
    use crate::app::settings::Settings;
    use std::collections::BTreeMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, crate::core::error::ConfigError> {
        let env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_sources(None, &env)
    }

    #[test]
    fn defaults_and_values() {
        let s = load(&[]).unwrap().receive;
        assert_eq!(s.addr.to_string(), "0.0.0.0:8780");
        assert_eq!(s.max_skew.as_secs(), 300);
        assert!(s.require().is_err(), "receive needs an app key");
        let s = load(&[
            ("SOBOT_PUSH_APP_KEY", "k"),
            ("SOBOT_PUSH_COMPANY_IDS", " a , b ,"),
            ("SOBOT_PUSH_CIPHER", "AES-GCM"),
            ("SOBOT_SYNC_RECEIVE_FLUSH_ROWS", "10"),
        ])
        .unwrap()
        .receive;
        assert_eq!(s.company_ids, vec!["a", "b"]);
        assert_eq!(s.cipher, super::CipherMode::Gcm);
        assert_eq!(s.flush_rows, 10);
        assert!(s.require().is_ok());
    }

    #[test]
    fn bad_values_name_the_setting_and_hide_keys() {
        let e = load(&[("SOBOT_PUSH_AES_KEY", "sixteen-no-more!x")]).unwrap_err();
        assert!(e.to_string().contains("SOBOT_PUSH_AES_KEY"), "{e}");
        assert!(!e.to_string().contains("sixteen-no-more"), "{e}");
        let e = load(&[("SOBOT_PUSH_CIPHER", "rot13")]).unwrap_err();
        assert!(e.to_string().contains("SOBOT_PUSH_CIPHER"), "{e}");
        let e = load(&[("SOBOT_SYNC_RECEIVE_ADDR", "here")]).unwrap_err();
        assert!(e.to_string().contains("SOBOT_SYNC_RECEIVE_ADDR"), "{e}");
        let e = load(&[("SOBOT_SYNC_RECEIVE_FLUSH_SECS", "0")]).unwrap_err();
        assert!(
            e.to_string().contains("SOBOT_SYNC_RECEIVE_FLUSH_SECS"),
            "{e}"
        );
        let s = load(&[
            ("SOBOT_PUSH_APP_KEY", "app-key-value"),
            ("SOBOT_PUSH_AES_KEY", "0123456789abcdef"),
        ])
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("app-key-value") && !dbg.contains("0123456789abcdef"),
            "{dbg}"
        );
    }
}
