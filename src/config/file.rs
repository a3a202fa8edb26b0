//! The YAML configuration file: its schema and its loading. Values stay text
//! so that they reach the same validation as the flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// The YAML file: the same keys as the flags, nested by their prefix.
/// Keys accept `snake_case` and the flags' `kebab-case`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub(super) web: WebFile,
    #[serde(default)]
    pub(super) monogoto: MonogotoFile,
    #[serde(default)]
    pub(super) poll: PollFile,
    #[serde(default)]
    pub(super) log: LogFile,
    #[serde(default)]
    pub(super) shard: ShardFile,
    #[serde(default)]
    pub(super) storage: StorageFile,
    #[serde(default)]
    pub(super) webhook: WebhookFile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookFile {
    #[serde(default, alias = "token-file")]
    pub(super) token_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "scalar")]
    pub(super) token: Option<String>,
    #[serde(default, alias = "max-body-size", deserialize_with = "scalar")]
    pub(super) max_body_size: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct StorageFile {
    #[serde(default)]
    pub(super) path: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ShardFile {
    #[serde(default, deserialize_with = "scalar")]
    pub(super) index: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub(super) count: Option<String>,
    #[serde(default, alias = "peer-url-template", deserialize_with = "scalar")]
    pub(super) peer_url_template: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct WebFile {
    #[serde(default, alias = "listen-address", deserialize_with = "scalar")]
    pub(super) listen_address: Option<String>,
    #[serde(default, alias = "telemetry-path", deserialize_with = "scalar")]
    pub(super) telemetry_path: Option<String>,
    #[serde(default, alias = "config-file")]
    pub(super) config_file: Option<PathBuf>,
    #[serde(default, alias = "read-header-timeout", deserialize_with = "scalar")]
    pub(super) read_header_timeout: Option<String>,
    #[serde(default, alias = "max-connections", deserialize_with = "scalar")]
    pub(super) max_connections: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct MonogotoFile {
    #[serde(default, deserialize_with = "scalar")]
    pub(super) url: Option<String>,
    #[serde(default, alias = "token-file")]
    pub(super) token_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "scalar")]
    pub(super) token: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub(super) username: Option<String>,
    #[serde(default, alias = "password-file")]
    pub(super) password_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "scalar")]
    pub(super) password: Option<String>,
    #[serde(default, alias = "iccid", deserialize_with = "scalar_list")]
    pub(super) iccids: Option<Vec<String>>,
    #[serde(default, alias = "iccids-file")]
    pub(super) iccids_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) discover: Option<bool>,
    #[serde(default, alias = "discover-interval", deserialize_with = "scalar")]
    pub(super) discover_interval: Option<String>,
    #[serde(default, alias = "rate-limit", deserialize_with = "scalar")]
    pub(super) rate_limit: Option<String>,
    #[serde(default, alias = "max-body-size", deserialize_with = "scalar")]
    pub(super) max_body_size: Option<String>,
    #[serde(default, alias = "thing-ids-format", deserialize_with = "scalar")]
    pub(super) thing_ids_format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PollFile {
    #[serde(default, deserialize_with = "scalar")]
    pub(super) interval: Option<String>,
    #[serde(default, alias = "batch-size", deserialize_with = "scalar")]
    pub(super) batch_size: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub(super) concurrency: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub(super) timeout: Option<String>,
    #[serde(default, alias = "stale-after", deserialize_with = "scalar")]
    pub(super) stale_after: Option<String>,
    #[serde(default, alias = "inactive-interval", deserialize_with = "scalar")]
    pub(super) inactive_interval: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub(super) retries: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LogFile {
    #[serde(default, deserialize_with = "scalar")]
    pub(super) level: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub(super) format: Option<String>,
}

/// YAML scalars of any type as text, so `batch_size: 50` and `batch_size: "50"`
/// both reach the one validation that the flags go through.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(Scalar::into_text))
}

fn scalar_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Scalar),
        Many(Vec<Scalar>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s.into_text()]),
        Some(OneOrMany::Many(v)) => Some(v.into_iter().map(Scalar::into_text).collect()),
    })
}

impl FileConfig {
    /// Makes the relative paths the file names relative to `dir`, its folder.
    fn resolve_paths(&mut self, dir: &Path) {
        let paths = [
            &mut self.web.config_file,
            &mut self.monogoto.token_file,
            &mut self.monogoto.password_file,
            &mut self.monogoto.iccids_file,
            &mut self.storage.path,
            &mut self.webhook.token_file,
        ];
        for path in paths.into_iter().flatten() {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }
}

pub(super) fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::value("config.file", &shown, format!("cannot read: {e}")))?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let mut file: FileConfig = serde_yaml_ng::from_str(&text)
        .map_err(|e| ConfigError::value("config.file", &shown, format!("invalid YAML: {e}")))?;
    // Read against the file's folder, as Prometheus and Alertmanager read the
    // paths in theirs: the file and the files it names move together, and
    // mean the same whatever directory the exporter is started from. (Flags
    // stay relative to the working directory, as a shell's paths are.)
    file.resolve_paths(path.parent().unwrap_or(Path::new("")));
    Ok(file)
}
