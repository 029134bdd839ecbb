//! Named AWS profiles for `s3://` destinations. `object_store` reads the environment, web
//! identity and instance credentials, not the shared files that `aws configure` writes; this
//! reads a profile's static keys, region and endpoint from them, as the AWS CLI does:
//! `AWS_PROFILE` (or `default`) in `AWS_SHARED_CREDENTIALS_FILE` (`~/.aws/credentials`,
//! section `[NAME]`) and `AWS_CONFIG_FILE` (`~/.aws/config`, section `[profile NAME]`, or
//! `[default]`). Keys in the environment win over any profile, and a profile that gets its keys
//! some other way (SSO, a role to assume, a process) is refused with the command that exports
//! them, rather than left to fall through to other credentials.

use std::path::{Path, PathBuf};

use ini::Ini;

/// What a profile gives the S3 builder; only what the environment does not set already.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ProfileSettings {
    /// Access key ID, secret access key and session token.
    pub keys: Option<(String, String, Option<String>)>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

/// Why a profile cannot be used: its name and the reason, which names the fix.
#[derive(Debug, PartialEq)]
pub(super) struct ProfileError {
    pub profile: String,
    pub reason: String,
}

/// Credentials in the environment, which `object_store` reads itself: keys, web identity (EKS),
/// a container's credentials endpoint (ECS).
const ENVIRONMENT_CREDENTIALS: [&str; 4] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/// Settings of the profile the environment names. `env` reads a variable, `read` a file
/// (`Ok(None)` when it does not exist). `Ok(None)`: no profile applies (none named and no
/// `default`).
pub(super) fn profile_settings(
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&Path) -> std::io::Result<Option<String>>,
) -> Result<Option<ProfileSettings>, ProfileError> {
    let named = env("AWS_PROFILE").filter(|p| !p.is_empty());
    let profile = named.clone().unwrap_or_else(|| "default".to_string());
    let fail = |reason: String| ProfileError {
        profile: profile.clone(),
        reason,
    };
    let home = env("HOME").map(PathBuf::from).unwrap_or_default();
    let file = |var: &str, name: &str| env(var).map(PathBuf::from).unwrap_or_else(|| home.join(".aws").join(name));
    let (credentials_path, config_path) = (file("AWS_SHARED_CREDENTIALS_FILE", "credentials"), file("AWS_CONFIG_FILE", "config"));
    let parse = |path: &Path| -> Result<Option<Ini>, ProfileError> {
        let text = read(path).map_err(|e| fail(format!("cannot be read from {} ({e}); fix the file's permissions", path.display())))?;
        text.map(|text| Ini::load_from_str(&text).map_err(|e| fail(format!("cannot be parsed from {} ({e}); fix the file", path.display()))))
            .transpose()
    };
    let (credentials, config) = (parse(&credentials_path)?, parse(&config_path)?);
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let from_credentials = credentials.as_ref().and_then(|i| i.section(Some(profile.as_str())));
    let from_config = config.as_ref().and_then(|i| i.section(Some(config_section.as_str())));
    if from_credentials.is_none() && from_config.is_none() {
        if named.is_none() {
            return Ok(None);
        }
        let mut known: Vec<String> = credentials.iter().flat_map(|i| i.sections().flatten().map(str::to_string)).collect();
        known.extend(
            config
                .iter()
                .flat_map(|i| i.sections().flatten().map(|s| s.trim_start_matches("profile ").to_string())),
        );
        known.sort();
        known.dedup();
        return Err(fail(format!(
            "not found in {} or {}; set AWS_PROFILE to one of: {}",
            credentials_path.display(),
            config_path.display(),
            if known.is_empty() {
                "(none: run `aws configure`)".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    // The credentials file wins over the config file, key by key.
    let get = |key: &str| {
        from_credentials
            .and_then(|s| s.get(key))
            .or_else(|| from_config.and_then(|s| s.get(key)))
            .map(str::to_string)
    };
    let keys = match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        _ if ENVIRONMENT_CREDENTIALS.iter().any(|v| env(v).is_some()) => None,
        (Some(id), Some(secret)) => Some((id, secret, get("aws_session_token"))),
        (Some(_), None) | (None, Some(_)) => {
            return Err(fail("has only one of aws_access_key_id and aws_secret_access_key; give both".to_string()));
        }
        (None, None) => {
            let other = [
                "sso_session",
                "sso_start_url",
                "role_arn",
                "credential_process",
                "credential_source",
                "web_identity_token_file",
            ];
            if let Some(way) = other.iter().find(|k| get(k).is_some()) {
                return Err(fail(format!(
                    "gets its keys through `{way}`, which postmark-elt does not run; export them first: eval \"$(aws configure export-credentials --profile {profile} --format env)\""
                )));
            }
            None
        }
    };
    let settings = ProfileSettings {
        keys,
        region: get("region").filter(|_| env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_none()),
        endpoint: get("endpoint_url").filter(|_| env("AWS_ENDPOINT_URL").is_none() && env("AWS_ENDPOINT").is_none()),
    };
    Ok(Some(settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const CREDENTIALS: &str = "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = s1\n\n[lake]\naws_access_key_id = AKLAKE\naws_secret_access_key = s2\naws_session_token = t2\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n\n[profile lake]\nregion = us-east-2\nendpoint_url = http://127.0.0.1:9000\n\n[profile sso]\nsso_session = corp\nregion = us-east-1\n\n[profile half]\naws_access_key_id = AKHALF\n";

    fn settings(vars: &[(&str, &str)]) -> Result<Option<ProfileSettings>, ProfileError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        profile_settings(
            |k| vars.get(k).cloned(),
            |p| {
                Ok(match p.to_string_lossy().as_ref() {
                    "/home/u/.aws/credentials" => Some(CREDENTIALS.to_string()),
                    "/home/u/.aws/config" => Some(CONFIG.to_string()),
                    _ => None,
                })
            },
        )
    }

    /// A named profile takes its keys from the credentials file and its region and endpoint
    /// from `[profile NAME]` of the config file; `default` is used when none is named.
    #[test]
    fn a_profile_gives_keys_region_and_endpoint() {
        let lake = settings(&[("HOME", "/home/u"), ("AWS_PROFILE", "lake")]);
        assert_eq!(
            lake,
            Ok(Some(ProfileSettings {
                keys: Some(("AKLAKE".into(), "s2".into(), Some("t2".into()))),
                region: Some("us-east-2".into()),
                endpoint: Some("http://127.0.0.1:9000".into()),
            }))
        );
        let default = settings(&[("HOME", "/home/u")]);
        assert_eq!(
            default,
            Ok(Some(ProfileSettings {
                keys: Some(("AKDEFAULT".into(), "s1".into(), None)),
                region: Some("eu-west-1".into()),
                endpoint: None,
            }))
        );
    }

    /// The environment wins over the profile, setting by setting.
    #[test]
    fn the_environment_wins() {
        let with_env_keys = settings(&[("HOME", "/home/u"), ("AWS_PROFILE", "sso"), ("AWS_ACCESS_KEY_ID", "AKENV")]);
        assert_eq!(
            with_env_keys.map(|s| s.and_then(|s| s.keys)),
            Ok(None),
            "keys in the environment: the SSO profile is not asked"
        );
        let env = settings(&[
            ("HOME", "/home/u"),
            ("AWS_PROFILE", "lake"),
            ("AWS_ACCESS_KEY_ID", "AKENV"),
            ("AWS_REGION", "ap-south-1"),
        ]);
        assert_eq!(
            env,
            Ok(Some(ProfileSettings {
                keys: None,
                region: None,
                endpoint: Some("http://127.0.0.1:9000".into()),
            }))
        );
    }

    /// No files and no name: nothing applies (other credentials are tried). A named profile
    /// that is missing, half-given, or gets its keys through SSO fails, naming the fix.
    #[test]
    fn missing_or_unusable_profiles_are_refused() {
        assert_eq!(settings(&[("HOME", "/elsewhere")]), Ok(None));
        let Err(missing) = settings(&[("HOME", "/home/u"), ("AWS_PROFILE", "nope")]) else {
            panic!("a missing profile was accepted")
        };
        assert!(
            missing.reason.contains("set AWS_PROFILE to one of: default, half, lake, sso"),
            "{}",
            missing.reason
        );
        let Err(sso) = settings(&[("HOME", "/home/u"), ("AWS_PROFILE", "sso")]) else {
            panic!("an SSO profile was accepted")
        };
        assert!(
            sso.reason.contains("`sso_session`") && sso.reason.contains("export-credentials --profile sso"),
            "{}",
            sso.reason
        );
        let Err(half) = settings(&[("HOME", "/home/u"), ("AWS_PROFILE", "half")]) else {
            panic!("half a key pair was accepted")
        };
        assert!(half.reason.contains("give both"), "{}", half.reason);
    }
}
